"""A SchwabProvider wired to a FakeSchwab with a valid token file, for scanner tests and benchmarks."""
import json
import os
import time

from tests.fake_schwab import MARKET_TIME, FakeSchwab
from workers.providers.schwab import SchwabConfig, SchwabProvider


def schwab_against(fake, directory, deadline, **overrides):
    token = os.path.join(directory, "schwab-token.json")
    with open(token, "w") as f:
        json.dump({"access_token": fake.issue_access_token(), "refresh_token": fake.refresh_token,
                   "expires_at": time.time() + 1800, "token_type": "Bearer"}, f)
    options = {"token_path": token, "app_key": fake.app_key, "app_secret": fake.app_secret,
               "base_url": fake.url, "auth_url": fake.url, "state_dir": str(directory),
               "call_timeout_s": deadline, "backoff_factor": 0.02, "requests_per_minute": 100000,
               "request_burst": 1000, **overrides}
    return SchwabProvider(SchwabConfig.from_mapping(options), clock=lambda: MARKET_TIME)


__all__ = ["FakeSchwab", "MARKET_TIME", "schwab_against"]
