"""The fake Schwab in a process of its own, so its threads do not share the benchmark's GIL.

A real upstream is another machine; run in-process, the fake's handler
threads (one trickling a byte every 0.2 s) would steal CPU from the client
being measured. `RemoteFakeSchwab` starts `python -m bench.fake_upstream`,
reads its URL and credentials, and forwards `misbehave(...)` over stdin.
"""
import json
import subprocess
import sys


class RemoteFakeSchwab:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fake_upstream"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.url, self.app_key, self.app_secret = info["url"], info["app_key"], info["app_secret"]
        self.refresh_token, self._token = info["refresh_token"], info["access_token"]

    def issue_access_token(self):
        return self._token

    def misbehave(self, path, mode, **options):
        self.proc.stdin.write(json.dumps({"path": path, "mode": mode, **options}) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(live=False):
    """`--live`: the market on the real clock (for trying the tree by hand), not the tests' fixed moment."""
    from tests.fake_schwab import FakeSchwab
    from workers.providers.sim import SimProvider

    fake = (FakeSchwab(SimProvider(seed=5)) if live else FakeSchwab()).start()
    print(json.dumps({"url": fake.url, "app_key": fake.app_key, "app_secret": fake.app_secret,
                      "refresh_token": fake.refresh_token, "access_token": fake.issue_access_token()}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            fake.misbehave(command.pop("path"), command.pop("mode"), **command)
            print("ok", flush=True)
    finally:
        fake.stop()


if __name__ == "__main__":
    serve(live="--live" in sys.argv[1:])
