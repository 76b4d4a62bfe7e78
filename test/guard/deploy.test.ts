// Which allowed lines deploy: the default prefixes, options between the words, git push and its
// destinations against the protected branches, and wrappers around a deploying command.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { createCommandChecker } from "../../src/guard/commands.ts";
import type { CommandPolicy } from "../../src/guard/commands.ts";
import { base } from "./fixtures.ts";

const checker = await createCommandChecker();
after(() => checker.close());

const deploying = (line: string | string[], policy: CommandPolicy = base): boolean => {
  const v = checker.check(line, policy);
  if (v.verdict === "deny") throw new Error(v.message);
  return v.deploying;
};

void describe("git push against protected branches [main, master, release/*, production]", () => {
  const cases: [string, boolean][] = [
    ["git push", true], // the current branch may be main
    ["git push origin", true],
    ["git push origin main", true],
    ["git push origin master", true],
    ["git push origin production", true],
    ["git push origin release/2.1", true],
    ["git push origin +main", true],
    ["git push origin refs/heads/main", true],
    ["git push origin feature/x:main", true],
    ["git push origin feature/x:refs/heads/release/3", true],
    ["git push origin :main", true], // deleting main
    ["git push --delete origin main", true],
    ["git push origin HEAD", true],
    ["git push origin @", true],
    ["git push origin HEAD~1", true],
    ["git push origin 'refs/heads/*'", true],
    ["git push origin :", true],
    ["git push --all", true],
    ["git push --branches origin", true],
    ["git push --mirror origin", true],
    ["git push -u origin main", true],
    ["git push --force-with-lease origin main", true],
    ["git push -o ci.skip origin main", true],
    ["git -C /repo push origin main", true],
    ["git -c push.default=current --no-pager push", true],
    ["git push origin \"$branch\"", true], // only known at run time
    ["git push origin feature/x", false],
    ["git push origin feature/main", false],
    ["git push origin mainline", false],
    ["git push origin HEAD:feature/x", false],
    ["git push origin main:feature/x", false],
    ["git push origin v1.2.0", false],
    ["git push origin refs/tags/v1.2.0", false],
    ["git push --tags", false],
    ["git push -n origin main", false],
    ["git push --dry-run", false],
    ["git -C /repo push -u origin feature/x", false],
    ["git commit -m 'push to main'", false],
    ["git pull origin main", false],
    ["git status", false],
  ];
  for (const [line, expected] of cases) {
    void it(`${JSON.stringify(line)} ${expected ? "deploys" : "does not deploy"}`, () => assert.equal(deploying(line), expected));
  }

  void it("uses the environment's own protected branches", () => {
    const policy: CommandPolicy = { ...base, protectedBranches: ["prod-*"] };
    assert.equal(deploying("git push origin prod-eu", policy), true);
    assert.equal(deploying("git push origin main", policy), false);
  });

  void it("git push is not deploying when the deploy list does not name it", () => {
    assert.equal(deploying("git push origin main", { ...base, deploy: ["npm publish"] }), false);
  });
});

void describe("deploy prefixes", () => {
  const cases: [string, boolean][] = [
    ["npm publish", true],
    ["npm publish --access public", true],
    ["npm --registry https://r.example publish", true], // a word after an option may be its value
    ["npm run publish", false],
    ["npm install publish-please", false],
    ["yarn publish", true],
    ["pnpm publish -r", true],
    ["cargo publish", true],
    ["twine upload dist/*", true],
    ["docker push ghcr.io/x/y:1", true],
    ["docker build -t x .", false],
    ["kubectl apply -f k8s/", true],
    ["kubectl -n prod apply -f k8s/", true],
    ["kubectl --context=prod rollout restart deploy/x", true],
    ["kubectl get pods", false],
    ["kubectl -n apply get pods", true], // option arities are unknown: a namespace "apply" reads as the verb
    ["helm upgrade --install x ./chart", true],
    ["helm template x ./chart", false],
    ["terraform apply -auto-approve", true],
    ["terraform -chdir=infra destroy", true],
    ["terraform plan", false],
    ["tofu apply", true],
    ["pulumi up --yes", true],
    ["pulumi preview", false],
    ["gh release create v1", true],
    ["gh release -R o/r create v1", true],
    ["gh release list", false],
    ["gh pr create", false],
    ["fly deploy", true],
    ["/usr/local/bin/kubectl apply -f x", true],
    ["kubectl $verb -f x", true], // only known at run time
  ];
  for (const [line, expected] of cases) {
    void it(`${JSON.stringify(line)} ${expected ? "deploys" : "does not deploy"}`, () => assert.equal(deploying(line), expected));
  }

  void it("an entry with an option needs that option anywhere", () => {
    const policy: CommandPolicy = { ...base, deploy: ["vercel --prod"] };
    assert.equal(deploying("vercel --prod", policy), true);
    assert.equal(deploying("vercel deploy --prod=true", policy), true);
    assert.equal(deploying("vercel deploy", policy), false);
  });

  void it("counts deploying commands behind wrappers, shells and lists", () => {
    for (const line of ["timeout 600 terraform apply", "bash -c 'npm publish'", "npm test && npm publish", "env CI=1 kubectl apply -f x", "echo $(git push)"]) {
      assert.equal(deploying(line), true, line);
    }
    assert.equal(deploying(["sh", "-c", "docker push x"]), true);
    assert.equal(deploying(["docker", "push", "x"]), true);
  });

  void it("an empty deploy list deploys nothing", () => {
    assert.equal(deploying("npm publish", { ...base, deploy: [] }), false);
  });
});
