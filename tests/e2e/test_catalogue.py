#!/usr/bin/env python3
"""The model catalogue the tests give their agents (AGENT_MODELS_FILE =
tests/fakemodel/models.json) is the one built into the pinned opencode:
tests/fakemodel/cut-catalogue.js cuts it out of every installed opencode
binary again and must give the committed file byte for byte. When
opencode's version changes, this test fails until the file is made again
(the command is in the script's header). No service runs; nothing touches
the network.
"""

import glob
import os
import subprocess
import unittest

import harness

SCRIPT = os.path.join(harness.SOURCE, "tests", "fakemodel", "cut-catalogue.js")
PROVIDERS = ("anthropic", "openai")


def binaries():
    return sorted(glob.glob(os.path.join(harness.SOURCE, "node_modules", "opencode-linux-*",
                                         "bin", "opencode")))


class CatalogueTest(unittest.TestCase):
    def test_fixture_is_the_pinned_catalogue(self):
        found = binaries()
        self.assertTrue(found, "no opencode binary under node_modules (scripts/deps.sh)")
        with open(harness.MODELS_FILE, "rb") as f:
            want = f.read()
        for binary in found:
            r = subprocess.run(["node", SCRIPT, binary] + list(PROVIDERS),
                               capture_output=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
            self.assertEqual(r.stdout, want,
                             "%s's catalogue differs from %s: make it again with %s"
                             % (binary, harness.MODELS_FILE, SCRIPT))

    def test_unknown_provider_is_refused(self):
        r = subprocess.run(["node", SCRIPT, binaries()[0], "anthropic", "no-such-provider"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 1)
        self.assertIn('provider "no-such-provider" is not in the catalogue', r.stderr)
        self.assertEqual(r.stdout, "")


if __name__ == "__main__":
    unittest.main()
