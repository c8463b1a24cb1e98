"""mdw-schwab-login against the local fake Schwab: the authorize URL, the code exchange with HTTP Basic,
the token file (mode 0600, the refresh token's issue time), where the app key and secret come from
(the environment, a private secrets file, the old system's schwab_client.json), and bad input: one
line on stderr and a non-zero exit."""
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.schwab_fixture import (CALLBACK_URL, DAY, TOKEN_PATH, Browser, authorize_url_in, browser_visit,
                                  write_token_file)
from workers import schwab_login
from workers.providers.schwab_tokens import TokenFile
from tests.schwab_fixture import fake  # noqa: F401 (a fixture: the local FakeSchwab)

NOW = 1_790_000_000.0  # the wall clock these logins run at


@pytest.fixture
def setup(tmp_path, fake):
    """A config pointing [provider] auth_url at the fake, and the credentials in the environment."""
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(f'[supervisor]\nstate_dir = "{state}"\n\n[provider]\nkind = "schwab"\nauth_url = "{fake.url}"\n')
    return {"config": config, "state": state, "token": state / "schwab-token.json",
            "environ": {"SCHWAB_APP_KEY": fake.app_key, "SCHWAB_APP_SECRET": fake.app_secret}}


def run_login(setup, *args, paste=None, stdin=None, environ=None):
    """(exit code, stdout, stderr, the Browser) of one in-process login."""
    out, err = io.StringIO(), io.StringIO()
    browser = Browser(out, paste) if paste else Browser(out)
    code = schwab_login.main(["--config", str(setup["config"]), *args], stdin=stdin or browser, stdout=out,
                             stderr=err, environ=setup["environ"] if environ is None else environ,
                             wall_clock=lambda: NOW)
    return code, out.getvalue(), err.getvalue(), browser


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mdw-schwab-login: "), err
    return lines[0]


# -- the flow ---------------------------------------------------------------------------


def test_login_prints_the_authorize_url_exchanges_the_code_and_writes_a_private_token_file(setup, fake):
    code, out, err, browser = run_login(setup)
    assert code == 0, err
    authorize = urlsplit(browser.visited)
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == f"{fake.url}/v1/oauth/authorize"
    assert parse_qs(authorize.query) == {"client_id": [fake.app_key], "redirect_uri": [CALLBACK_URL]}
    assert fake.token_forms == [{"grant_type": "authorization_code", "code": fake.token_forms[0]["code"],
                                 "redirect_uri": CALLBACK_URL}]
    assert fake.token_forms[0]["code"].endswith("@")  # Schwab's codes end in '@', pasted as %40
    assert stat.S_IMODE(os.stat(setup["token"]).st_mode) == 0o600
    tokens = TokenFile(setup["token"]).load()
    assert tokens.refresh_token == fake.refresh_token and tokens.access_token in fake.access_tokens
    assert tokens.refresh_issued_at == NOW and tokens.expires_at == NOW + 1800
    assert tokens.refresh_expires_at == NOW + 7 * DAY
    assert str(setup["token"]) in out and "2026" in out and "mdw-schwab-login again" in out
    assert [p.name for p in setup["state"].iterdir() if p.name.startswith(".schwab-token-")] == []
    assert fake.hits(TOKEN_PATH) == 1 and fake.hits("/v1/oauth/authorize") == 1


def test_the_code_exchange_authenticates_with_http_basic(setup, fake):
    """The fake answers 401 invalid_client unless Authorization is Basic base64(key:secret)."""
    environ = {**setup["environ"], "SCHWAB_APP_SECRET": "not-the-secret"}
    code, _, err, _ = run_login(setup, environ=environ)
    assert code == 1 and not setup["token"].exists()
    line = one_line(err)
    assert "invalid_client" in line and "SCHWAB_APP_KEY/SCHWAB_APP_SECRET in the environment" in line
    assert "not-the-secret" not in line
    assert run_login(setup)[0] == 0  # the right pair, same everything else


def test_login_as_the_console_script_reads_the_pasted_url_from_stdin(setup, fake):
    script = Path(sys.executable).with_name("mdw-schwab-login")
    assert script.exists(), "setup.cfg's console script is installed by `make test`"
    proc = subprocess.Popen([str(script), "--config", str(setup["config"])], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **setup["environ"]})
    try:
        printed = ""
        while "/v1/oauth/authorize?" not in printed:
            line = proc.stdout.readline()
            assert line, f"the login ended before printing the authorize URL: {proc.stderr.read()}"
            printed += line
        location = browser_visit(authorize_url_in(printed))
        out, err = proc.communicate(location + "\n", timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "Logged in" in out and TokenFile(setup["token"]).load().refresh_token == fake.refresh_token


# -- bad input: one line, non-zero exit -------------------------------------------------


@pytest.mark.parametrize("paste, words", [
    (lambda location: location.replace("code=", "state="), "has no code= parameter"),
    (lambda location: "", "no URL was pasted"),
    (lambda location: location.replace("127.0.0.1:8182", "127.0.0.1:8443"), "not to the callback URL"),
    (lambda location: location.replace("https://127.0.0.1:8182", "https://127.0.0.1:8182/cb"),
     "not to the callback URL"),
    (lambda location: location.split("?")[0] + "?error=access_denied&error_description=denied",
     "did not authorize the app (access_denied"),
])
def test_a_bad_pasted_url_gets_one_line_and_exit_1(setup, fake, paste, words):
    code, _, err, _ = run_login(setup, paste=paste)
    assert code == 1 and words in one_line(err) and not setup["token"].exists()
    assert fake.token_forms == []  # nothing was sent to Schwab


def test_a_code_the_token_endpoint_refuses_gets_one_line_and_exit_1(setup, fake):
    used = {}

    def reuse(location):  # the code works once: spend it, then paste the same address
        used["code"] = parse_qs(urlsplit(location).query)["code"][0]
        fake.codes.discard(used["code"])
        return location

    code, _, err, _ = run_login(setup, paste=reuse)
    line = one_line(err)
    assert code == 1 and "refused the authorization code (invalid_grant)" in line and "30 seconds" in line
    assert used["code"] not in line and not setup["token"].exists()


def test_a_callback_url_other_than_the_registered_one_ends_in_one_line(setup, fake):
    """Schwab shows an error page instead of redirecting; what the user pastes then is no callback."""
    unregistered = "https://127.0.0.1:9999"
    authorize = schwab_login.authorize_url(fake.url, fake.app_key, unregistered)
    with pytest.raises(AssertionError, match="answered 400"):
        browser_visit(authorize)
    code, _, err, _ = run_login(setup, "--callback-url", unregistered, stdin=io.StringIO(authorize + "\n"))
    line = one_line(err)
    assert code == 1 and f"not to the callback URL {unregistered}" in line and "[provider] callback_url" in line


def test_a_broken_config_value_is_exit_2_naming_the_key(setup):
    setup["config"].write_text('[provider]\ncallback_url = "127.0.0.1:8182"\n')
    code, _, err, _ = run_login(setup, stdin=io.StringIO(""))
    assert code == 2 and "provider.callback_url: allowed is an http:// or https:// URL" in one_line(err)


# -- where the key and secret come from ----------------------------------------------------


def test_missing_credentials_name_the_variables_and_the_config_key(setup):
    code, out, err, _ = run_login(setup, environ={"SCHWAB_APP_KEY": "k"}, stdin=io.StringIO(""))
    line = one_line(err)
    assert code == 1 and "SCHWAB_APP_SECRET not set" in line and "[provider] secrets_file" in line
    assert "authorize" not in out


def secrets_config(setup, fake, name, document, mode=0o600):
    setup["state"].mkdir(exist_ok=True)
    path = setup["state"] / name
    path.write_text(json.dumps(document))
    os.chmod(path, mode)
    setup["config"].write_text(setup["config"].read_text() + f'secrets_file = "{name}"\n')
    return path


def test_a_private_secrets_file_supplies_the_key_and_secret(setup, fake):
    secrets_config(setup, fake, "schwab-secrets.json", {"app_key": fake.app_key, "app_secret": fake.app_secret})
    assert run_login(setup, environ={})[0] == 0
    assert TokenFile(setup["token"]).load().refresh_token == fake.refresh_token


@pytest.mark.parametrize("mode, who", [(0o644, "its group and others"), (0o640, "its group"), (0o604, "others")])
def test_a_secrets_file_others_can_read_is_refused_saying_why(setup, fake, mode, who):
    path = secrets_config(setup, fake, "schwab-secrets.json", {"app_key": fake.app_key,
                                                              "app_secret": fake.app_secret}, mode)
    code, _, err, _ = run_login(setup, environ={}, stdin=io.StringIO(""))
    line = one_line(err)
    assert code == 1 and f"is open to {who} (mode {mode:04o}): refused" in line
    assert f"chmod 600 {path}" in line and fake.app_secret not in line


def test_the_old_systems_schwab_client_json_serves_as_secrets_and_token_file_as_it_is(setup, fake):
    """client.api_key/app_secret/callback are used; the new tokens go into its "token" table and the
    "client" table is kept, so the old tools can still read it."""
    setup["state"].mkdir()
    old = write_token_file(setup["state"] / "schwab_client.json", fake, refresh="old-dead-refresh-token",
                           issued_at=NOW - 8 * DAY, shape="old")
    setup["config"].write_text(setup["config"].read_text()
                               + 'secrets_file = "schwab_client.json"\ntoken_file = "schwab_client.json"\n')
    code, _, err, browser = run_login(setup, environ={})
    assert code == 0, err
    assert parse_qs(urlsplit(browser.visited).query)["redirect_uri"] == [CALLBACK_URL]  # client.callback
    document = json.loads(old.read_text())
    assert document["client"]["api_key"] == fake.app_key and document["client"]["app_secret"] == fake.app_secret
    assert document["token"]["refresh_token"] == fake.refresh_token
    assert document["token"]["refresh_token_created_at"] == int(NOW)  # as the old monitor reads it
    assert document["token"]["expires_in"] == 1800
    assert TokenFile(old).load().refresh_issued_at == NOW
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o600


def test_the_environment_wins_over_the_secrets_file(setup, fake):
    secrets_config(setup, fake, "schwab-secrets.json", {"app_key": "stale-key", "app_secret": "stale-secret"})
    assert run_login(setup)[0] == 0


def test_a_schwab_py_token_file_keeps_its_shape_through_a_login(setup, fake):
    setup["state"].mkdir()
    write_token_file(setup["token"], fake, shape="schwab-py", issued_at=NOW - 6 * DAY)
    assert run_login(setup)[0] == 0
    document = json.loads(setup["token"].read_text())
    assert document["creation_timestamp"] == int(NOW) and document["token"]["refresh_token"] == fake.refresh_token


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a file to another user")
def test_a_login_run_as_root_gives_the_token_file_to_the_owner_of_its_directory(setup, fake):
    """Under systemd the state dir belongs to the service's dynamic user; a root-owned 0600 file there would be
    unreadable to it."""
    setup["state"].mkdir()
    os.chown(setup["state"], 61234, 61235)
    assert run_login(setup)[0] == 0
    st = os.stat(setup["token"])
    assert (st.st_uid, st.st_gid) == (61234, 61235) and stat.S_IMODE(st.st_mode) == 0o600


def test_ctrl_c_while_waiting_for_the_paste_is_one_line_and_leaves_the_file_alone(setup):
    class Interrupted:
        def readline(self):
            raise KeyboardInterrupt

    code, _, err, _ = run_login(setup, stdin=Interrupted())
    assert code == 130 and "interrupted; the token file is unchanged" in one_line(err)
    assert not setup["token"].exists()
