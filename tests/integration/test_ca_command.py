"""`sidekey ca init|export`: the interception CA on disk, as the command creates and prints it."""
import os
import re
import shutil
import stat
import subprocess
import unittest

from harness import SIDEKEY_BIN, Sidekey


def openssl(*args, input=None):
    return subprocess.run(["openssl"] + list(args), input=input, capture_output=True, text=True, timeout=60,
                          check=True).stdout


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class CaCommandTest(unittest.TestCase):
    def setUp(self):
        self.sk = Sidekey()

    def tearDown(self):
        shutil.rmtree(self.sk.dir, ignore_errors=True)

    def test_init_then_export_yield_the_same_ca(self):
        sk = self.sk
        p = sk.run_cli("ca", "init")
        cert_path = os.path.join(sk.data_dir, "ca.pem")
        key_path = os.path.join(sk.data_dir, "ca-key.pem")
        self.assertIn(cert_path, p.stdout)
        self.assertIn("created", p.stdout)
        fp = re.search(r"sha256: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", p.stdout)
        self.assertTrue(fp, p.stdout)

        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(cert_path).st_mode), 0o644)

        exported = sk.run_cli("ca", "export").stdout
        with open(cert_path) as f:
            on_disk = f.read()
        self.assertEqual(exported, on_disk)
        self.assertTrue(exported.startswith("-----BEGIN CERTIFICATE-----\n"))
        self.assertNotIn("PRIVATE", exported)

        # The fingerprint `init` printed is the certificate's.
        out = openssl("x509", "-noout", "-fingerprint", "-sha256", input=exported)
        self.assertIn(fp.group(1), out)

        text = openssl("x509", "-noout", "-text", input=exported)
        self.assertRegex(text, r"X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0")
        self.assertIn("prime256v1", text)
        self.assertRegex(text, r"X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign")
        self.assertIn("O = sidekey, CN = sidekey interception CA ", text)

        # A second init keeps the CA; export stays identical.
        p2 = sk.run_cli("ca", "init")
        self.assertIn("using", p2.stdout)
        self.assertIn(fp.group(1), p2.stdout)
        self.assertEqual(sk.run_cli("ca", "export").stdout, exported)

        # The key file holds the certificate's key (and nothing is printed from it).
        pub_from_key = openssl("pkey", "-in", key_path, "-pubout")
        pub_from_cert = openssl("x509", "-noout", "-pubkey", input=exported)
        self.assertEqual(pub_from_key, pub_from_cert)
        with open(key_path) as f:
            key_text = f.read()
        body = "".join(key_text.splitlines()[1:-1])
        self.assertNotIn(body[:40], p.stdout + p.stderr + p2.stdout + p2.stderr)

    def test_export_creates_the_ca_when_missing(self):
        sk = self.sk
        exported = sk.run_cli("ca", "export").stdout
        self.assertTrue(exported.startswith("-----BEGIN CERTIFICATE-----"))
        self.assertTrue(os.path.exists(os.path.join(sk.data_dir, "ca-key.pem")))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(sk.data_dir, "ca-key.pem")).st_mode), 0o600)
        self.assertIn("ca.pem", sk.run_cli("ca", "init").stdout)
        self.assertEqual(sk.run_cli("ca", "export").stdout, exported)

    def test_data_dir_flag_and_configured_ca(self):
        sk = self.sk
        other = os.path.join(sk.dir, "elsewhere")
        p = sk.run_cli("ca", "init", "--data-dir", other)
        self.assertIn(os.path.join(other, "ca.pem"), p.stdout)
        self.assertFalse(os.path.exists(os.path.join(sk.data_dir, "ca.pem")))

        # An operator's CA from tls.ca_cert / tls.ca_key is used as is.
        sk.config["tls"] = {"ca_cert": os.path.join(other, "ca.pem"), "ca_key": os.path.join(other, "ca-key.pem")}
        with open(os.path.join(other, "ca.pem")) as f:
            theirs = f.read()
        self.assertEqual(sk.run_cli("ca", "export").stdout, theirs)
        self.assertFalse(os.path.exists(os.path.join(sk.data_dir, "ca.pem")))

        # A key that is not the certificate's is refused (exit 1, a clear message).
        del sk.config["tls"]
        sk.run_cli("ca", "init")  # a second CA, in data_dir
        sk.config["tls"] = {"ca_cert": os.path.join(other, "ca.pem"),
                            "ca_key": os.path.join(sk.data_dir, "ca-key.pem")}
        p = sk.run_cli("ca", "export", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("do not match", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_init_prints_a_normal_absolute_path_for_a_relative_data_dir(self):
        """`ca init` prints where the certificate is as an absolute, normal path: never
        "/w/./data/ca.pem", whether data_dir comes from a relative config file, the defaults or
        a relative --data-dir."""
        sk = self.sk
        with open(sk.config_path, "w") as f:
            f.write('data_dir: ./data\n')
        os.mkdir(os.path.join(sk.dir, "sub"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")}
        for cwd, args, data in ((sk.dir, ["--config", "sidekey.yaml"], "data"),
                                (sk.dir, [], "data"),                           # ./sidekey.yaml
                                (sk.dir, ["--data-dir", "./flagged/"], "flagged"),
                                (os.path.join(sk.dir, "sub"), ["--config", "../sidekey.yaml"], "data"),
                                (os.path.join(sk.dir, "sub"), ["--data-dir", "../sub/./x/../d"], "sub/d")):
            p = subprocess.run([SIDEKEY_BIN, "ca", "init"] + args, capture_output=True, text=True, timeout=60,
                               cwd=cwd, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            printed = re.search(r"^certificate: (.*)$", p.stdout, re.M).group(1)
            self.assertTrue(os.path.isabs(printed), p.stdout)
            self.assertEqual(printed, os.path.normpath(printed), p.stdout)
            self.assertTrue(os.path.samefile(printed, os.path.join(sk.dir, data, "ca.pem")), p.stdout)

    def test_usage_errors(self):
        sk = self.sk
        for args in (("ca",), ("ca", "frobnicate"), ("ca", "init", "--bogus")):
            p = sk.run_cli(*args, check=False)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn("sidekey", p.stderr)


if __name__ == "__main__":
    unittest.main()
