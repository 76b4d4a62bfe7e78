/*
 * paddock-sandbox: the native half of Paddock's local provider.
 *
 *   paddock-sandbox launch [options]   run by the control plane as real root; builds the sandbox
 *   paddock-sandbox agent  [options]   pid 1 inside the sandbox; serves exec/put/get/ls
 *   paddock-sandbox idmap SRC DST...   idmapped views of layers for the gVisor tier (idmap.c)
 *
 * One binary so the launcher can exec its own agent through an fd opened before pivot_root:
 * nothing of ours needs to exist inside the sandbox's filesystem. See docs/sandbox.md.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) die_plain("usage: paddock-sandbox launch|agent|idmap [options]");
    if (strcmp(argv[1], "launch") == 0) return launch_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "agent") == 0) return agent_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "idmap") == 0) return idmap_main(argc - 2, argv + 2);
    die_plain("unknown mode %s (expected launch, agent or idmap)", argv[1]);
}
