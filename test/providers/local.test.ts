import { openLayerStore } from "../../src/layers/index.ts";
import { createLocalProvider } from "../../src/providers/local/index.ts";
import { releaseHome } from "../helpers/server.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitForExit } from "../../src/providers/local/procs.ts";
import { runProviderSuite } from "./suite.ts";

runProviderSuite("local (btrfs layers)", async () => {
  const home = await tempDir();
  const layers = await openLayerStore({ home: home.path, kind: "btrfs", imageBytes: 4 * 2 ** 30 });
  const provider = await createLocalProvider({ home: home.path, layers });
  return {
    provider,
    layers,
    waitGone: async (state) => {
      await waitForExit(state.supervisorPid as number, 5000);
    },
    reopen: () => createLocalProvider({ home: home.path, layers }),
    cleanup: async () => {
      await layers.close({ unmount: true });
      await releaseHome(home.path);
      await home.remove();
    },
  };
});

