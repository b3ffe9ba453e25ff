"""Crash safety of the secrets store (SPEC section 13, invariant 8).

A writer process puts k<i> = value-<i> in a loop and acknowledges each put once it has returned.
It is killed with SIGKILL at a random moment; the store must then open (old or new state, never
neither) and hold every acknowledged secret. The temp file of a write killed before its rename is
removed by the next open of the store.

Needs SIDEKEY_TOOLS = the folder holding the store_crash_writer binary (set by CTest).
"""

import base64
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ROUNDS = 60
TIME_BUDGET_S = 45


def tool(name):
    folder = os.environ.get("SIDEKEY_TOOLS")
    if not folder:
        raise unittest.SkipTest("SIDEKEY_TOOLS is not set (run through CTest or set it to the tests build folder)")
    path = os.path.join(folder, name)
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is missing: build the {name} target first")
    return path


class StoreCrashTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.writer = tool("store_crash_writer")

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sidekey-store-crash-")
        self.db = os.path.join(self.dir, "secrets.db")
        self.env = dict(os.environ, SIDEKEY_STORE_KEY=base64.b64encode(os.urandom(32)).decode())

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def temp_files(self):
        return sorted(f for f in os.listdir(self.dir) if f.startswith(".secrets.db.tmp-"))

    def verify(self, env=None):
        return subprocess.run([self.writer, "verify", self.db], env=env or self.env, capture_output=True,
                              text=True, timeout=30)

    def run_writer_and_kill(self, start, rng):
        proc = subprocess.Popen([self.writer, "write", self.db, str(start)], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Mostly short runs (kills land in all phases of a write), sometimes longer ones so the
        # file grows and writes take longer.
        time.sleep(rng.choice([rng.uniform(0.0, 0.03), rng.uniform(0.01, 0.15), rng.uniform(0.1, 0.4)]))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, -signal.SIGKILL, f"writer ended on its own: {err.decode(errors='replace')}")
        acked = set()
        for line in out.decode().split("\n"):
            if line.startswith("ack "):
                acked.add(int(line[4:]))
        return acked

    def test_kill_at_random_points_never_loses_acknowledged_writes(self):
        rng = random.Random(int(os.environ.get("SIDEKEY_CRASH_SEED", time.time_ns())))
        acked = set()
        next_i = 0
        started = time.monotonic()
        rounds = 0
        interrupted = 0
        while rounds < ROUNDS and (rounds < 50 or time.monotonic() - started < TIME_BUDGET_S):
            new = self.run_writer_and_kill(next_i, rng)
            acked |= new
            rounds += 1
            # A kill before the rename leaves that write's temp file (only one: the previous
            # round's verify removed any older one when it opened the store).
            leftovers = self.temp_files()
            self.assertLessEqual(len(leftovers), 1, f"round {rounds}: {leftovers}")
            interrupted += len(leftovers)
            result = self.verify()
            self.assertEqual(result.returncode, 0, f"round {rounds}: store does not open: {result.stderr.strip()}")
            names = set(result.stdout.split())
            missing = {f"k{i}" for i in acked} - names
            self.assertFalse(missing, f"round {rounds}: acknowledged secrets lost: {sorted(missing)[:10]}")
            # Besides the acknowledged puts, at most the one in flight at the kill may be present.
            in_flight = f"k{max(new) + 1}" if new else f"k{next_i}"
            extra = names - {f"k{i}" for i in acked} - {in_flight}
            self.assertFalse(extra, f"round {rounds}: unexpected secrets: {sorted(extra)[:10]}")
            next_i = max([next_i - 1] + [int(n[1:]) for n in names]) + 1
            # Writes the writer did not acknowledge but that made it to disk are now part of the
            # store: a later round must keep them too.
            acked |= {int(n[1:]) for n in names}
            # Opening the store (verify) removed the leftover.
            self.assertEqual(self.temp_files(), [], f"round {rounds}: temp file not removed at open")
        self.assertGreaterEqual(rounds, 50)
        self.assertGreater(len(acked), 0, "the writer never acknowledged a write")
        self.assertEqual(sorted(os.listdir(self.dir)), ["secrets.db", "secrets.db.lock"])
        # Temp files left by writes killed mid-way show the kills really landed inside writes.
        print(f"\n  {rounds} rounds, {len(acked)} secrets, {interrupted} writes killed before their rename",
              file=sys.stderr)

    def test_two_writer_processes_at_once_lose_nothing(self):
        # Each writer keeps its own copy in memory; without the file lock and the reload before
        # each write, one would overwrite the other's acknowledged secrets.
        rng = random.Random(int(os.environ.get("SIDEKEY_CRASH_SEED", time.time_ns())))
        acked = set()
        starts = [0, 1_000_000]
        for rnd in range(1, 6):
            procs = [subprocess.Popen([self.writer, "write", self.db, str(start)], env=self.env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for start in starts]
            time.sleep(rng.uniform(0.3, 0.8))
            new = []
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
                out, err = proc.communicate(timeout=30)
                self.assertEqual(proc.returncode, -signal.SIGKILL, f"writer ended on its own: {err.decode(errors='replace')}")
                new.append({int(line[4:]) for line in out.decode().split("\n") if line.startswith("ack ")})
            self.assertTrue(all(new), f"round {rnd}: a writer never acknowledged a write")
            acked |= new[0] | new[1]
            result = self.verify()
            self.assertEqual(result.returncode, 0, f"round {rnd}: store does not open: {result.stderr.strip()}")
            names = set(result.stdout.split())
            missing = {f"k{i}" for i in acked} - names
            self.assertFalse(missing, f"round {rnd}: acknowledged secrets lost: {sorted(missing)[:10]}")
            in_flight = {f"k{max(n) + 1}" for n in new}
            extra = names - {f"k{i}" for i in acked} - in_flight
            self.assertFalse(extra, f"round {rnd}: unexpected secrets: {sorted(extra)[:10]}")
            acked |= {int(n[1:]) for n in names}
            starts = [max(n) + 2 for n in new]  # past what each wrote, in-flight one included
        self.assertEqual(self.temp_files(), [])

    def test_wrong_key_and_tampering_are_reported(self):
        proc = subprocess.Popen([self.writer, "write", self.db], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            self.assertTrue(proc.stdout.readline().startswith(b"ack "))
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        self.assertEqual(self.verify().returncode, 0)

        other = dict(self.env, SIDEKEY_STORE_KEY=base64.b64encode(os.urandom(32)).decode())
        result = self.verify(other)
        self.assertEqual(result.returncode, 1)
        self.assertIn("wrong key or tampered file", result.stderr)
        self.assertIn(self.db, result.stderr)

        with open(self.db, "r+b") as f:
            data = bytearray(f.read())
            data[len(data) // 2] ^= 0x01
            f.seek(0)
            f.write(data)
        result = self.verify()
        self.assertEqual(result.returncode, 1)
        self.assertIn("wrong key or tampered file", result.stderr)

        with open(self.db, "r+b") as f:
            f.truncate(20)
        result = self.verify()
        self.assertEqual(result.returncode, 1)
        self.assertIn("truncated", result.stderr)


if __name__ == "__main__":
    unittest.main()
