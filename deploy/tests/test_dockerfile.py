"""deploy/Dockerfile, read statically (CI has no container engine; tests/container.rs
runs its command lines): both runtime stages run as a non-root user, write only to the
state volume, have a health check, and the build stage cross-compiles on the build
machine's platform; the base images are build arguments, so a release pins them by
digest; the binary is the release profile's, which strips it."""

import json
import re
import tomllib
import unittest

from support import DEPLOY, HEALTH_CHECK, STATE_DIR

DOCKERFILE = DEPLOY / "Dockerfile"
RUNTIME_UID = "65532"


def instructions(text):
    """(keyword, rest) per instruction: continuation lines joined, comments skipped."""
    out, current = [], ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def stages(text):
    """The global ARGs, and each stage as {"from": ..., "name": ..., "body": [(kw, rest)]}."""
    args, out = {}, []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            words = rest.split()
            name = words[words.index("AS") + 1] if "AS" in words else None
            image = [w for w in words if not w.startswith("--")][0]
            platform = next((w.split("=", 1)[1] for w in words if w.startswith("--platform=")), None)
            out.append({"from": image, "name": name, "platform": platform, "body": []})
        elif not out:
            if keyword == "ARG":
                name, _, default = rest.partition("=")
                args[name] = default
        else:
            out[-1]["body"].append((keyword, rest))
    return args, out


def last(stage, keyword):
    values = [rest for kw, rest in stage["body"] if kw == keyword]
    return values[-1] if values else None


class Dockerfile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.args, cls.stages = stages(DOCKERFILE.read_text(encoding="utf-8"))
        cls.by_name = {s["name"]: s for s in cls.stages}
        cls.runtimes = [cls.by_name["distroless"], cls.stages[-1]]

    def test_stages(self):
        self.assertEqual([s["name"] for s in self.stages], ["build", "distroless", "runtime"])
        # The default (last) stage is the Debian runtime.
        self.assertEqual(self.stages[-1]["from"], "${RUNTIME_IMAGE}")

    def test_base_images_are_arguments_with_pinned_tags(self):
        froms = {s["name"]: s["from"] for s in self.stages}
        self.assertEqual(
            froms, {"build": "${BUILD_IMAGE}", "distroless": "${DISTROLESS_IMAGE}", "runtime": "${RUNTIME_IMAGE}"}
        )
        for name in ("BUILD_IMAGE", "DISTROLESS_IMAGE", "RUNTIME_IMAGE"):
            image = self.args[name]
            # A tag that names a release, never `latest` or none (a digest is passed at release).
            self.assertRegex(image, r"^[a-z0-9./-]+:[A-Za-z0-9][A-Za-z0-9._-]*$", name)
            self.assertNotEqual(image.rsplit(":", 1)[1], "latest", name)

    def test_build_stage_cross_compiles_without_emulation(self):
        build = self.by_name["build"]
        self.assertEqual(build["platform"], "$BUILDPLATFORM")
        self.assertEqual([r for kw, r in build["body"] if kw == "ARG"], ["TARGETARCH", "BUILDARCH"])
        cargo = next(r for kw, r in build["body"] if kw == "RUN" and "cargo build" in r)
        self.assertIn('--target "$target"', cargo)
        self.assertIn("_LINKER=$gcc", cargo)
        # Precompiling runs the built binary: only when it is the build machine's own.
        precompile = next(r for kw, r in build["body"] if kw == "RUN" and "sse-ingest precompile" in r)
        self.assertTrue(precompile.startswith('if [ "$TARGETARCH" != "$BUILDARCH" ]; then exit 0; fi;'), precompile)

    def test_the_image_gets_the_stripped_release_binary(self):
        cargo = next(r for kw, r in self.by_name["build"]["body"] if kw == "RUN" and "cargo build" in r)
        self.assertIn("cargo build --release", cargo)
        # No symbols or debug info in the image (strip = true is "symbols": both).
        with open(DEPLOY.parent / "Cargo.toml", "rb") as f:
            release = tomllib.load(f)["profile"]["release"]
        self.assertIn(release.get("strip"), (True, "symbols"))

    def test_runtimes_run_as_the_non_root_user(self):
        for stage in self.runtimes:
            self.assertEqual(last(stage, "USER"), f"{RUNTIME_UID}:{RUNTIME_UID}", stage["name"])
            # USER comes before anything that runs: ENTRYPOINT, CMD and HEALTHCHECK.
            keywords = [kw for kw, _ in stage["body"]]
            self.assertLess(keywords.index("USER"), keywords.index("ENTRYPOINT"))

    def test_runtimes_write_only_to_the_state_volume(self):
        for stage in self.runtimes:
            self.assertEqual(json.loads(last(stage, "VOLUME")), [STATE_DIR], stage["name"])
            self.assertEqual(last(stage, "WORKDIR"), STATE_DIR, stage["name"])
            for keyword, rest in stage["body"]:
                # Whatever the runtime user owns is the state directory, nothing else.
                if keyword == "COPY" and f"--chown={RUNTIME_UID}" in rest:
                    self.assertEqual(rest.split()[-1], STATE_DIR, rest)
                if keyword == "RUN":
                    owned = re.findall(rf"install -d -o {RUNTIME_UID} -g {RUNTIME_UID} -m \d+ (\S+)", rest)
                    self.assertEqual(owned, [STATE_DIR], rest)
                    self.assertNotIn("chmod", rest)
                    self.assertNotIn("chown", rest)

    def test_runtimes_have_the_health_check_and_entrypoint(self):
        for stage in self.runtimes:
            check = last(stage, "HEALTHCHECK")
            self.assertIsNotNone(check, stage["name"])
            options, _, command = check.partition(" CMD ")
            self.assertEqual(["CMD", *json.loads(command)], HEALTH_CHECK)
            self.assertIn("--interval=30s", options.split())
            self.assertEqual(json.loads(last(stage, "ENTRYPOINT")), ["/usr/local/bin/sse-ingest"])
            self.assertEqual(json.loads(last(stage, "CMD")), ["run", "--config", "/etc/sse-ingest/config.toml"])
            self.assertEqual(
                last(stage, "ENV"), "SSE_INGEST_PRECOMPILED_DIR=/usr/local/lib/sse-ingest/precompiled"
            )

    def test_parser_sees_a_root_user(self):
        # The checks above can fail: a stage that switches back to root is seen.
        _, parsed = stages("FROM a AS runtime\nUSER 65532:65532\nUSER root\nENTRYPOINT [\"x\"]\n")
        self.assertEqual(last(parsed[0], "USER"), "root")


if __name__ == "__main__":
    unittest.main()
