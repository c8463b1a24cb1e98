"""mdw-schwab-login: the Schwab login (OAuth authorization code), which writes the token file.

    mdw-schwab-login [--config PATH] [--state-dir DIR] [--callback-url URL]

Schwab's refresh token dies 7 days after the login that issued it, so this
is run once a week, by a person (Schwab wants a browser and its own login
page; nothing here sees the password):

1. it prints the authorize URL, {auth_url}/v1/oauth/authorize?client_id=
   <app key>&redirect_uri=<callback URL>, to open in a browser;
2. after the Schwab login and "Allow", Schwab sends the browser to the
   callback URL with ?code=...; that page need not load (nothing listens
   there): its address is what counts, and the user pastes it here (stdin);
3. the pasted URL must go to the callback URL and hold code=; the code is
   exchanged at once (Schwab's codes live about 30 seconds) at
   {auth_url}/v1/oauth/token, grant_type=authorization_code, with HTTP Basic
   (app key, app secret);
4. the token file is written atomically, mode 0600, with the time the
   refresh token was issued (workers/providers/schwab_tokens.py). An existing
   file keeps its shape and its other fields (the old system's
   schwab_client.json keeps its "client" table). Run as root, the file is
   given to the owner of its directory: the service's user.

The running service needs no restart: each worker re-reads the token file
when it changes, and a new refresh token lifts any backoff after a refusal.

Settings are mdwd's: the embedded defaults, overridden by --config: state_dir
(--state-dir wins; else [supervisor] state_dir, relative to the config file's
folder, else $STATE_DIRECTORY, else ~/.local/state/market-data-worker: see
supervisor/shared/paths.py) and [provider] auth_url, token_file, secrets_file, callback_url. The
app key and secret come from SCHWAB_APP_KEY/SCHWAB_APP_SECRET or
secrets_file (workers/providers/schwab_credentials.py); the callback URL from
--callback-url, else the config file's callback_url, else the secrets file's
(the old schwab_client.json's client.callback), else the default.

Exit codes: 0 logged in; 1 the login failed (a pasted URL without code=, one
that goes elsewhere than the callback URL, a code or credentials Schwab
refused, an unusable secrets file): one line on stderr says why and what to
do; 2 a bad command line or config file; 130 interrupted (Ctrl-C).
"""
import argparse
import os
import sys
import time
import tomllib
from urllib.parse import parse_qs, urlencode, urlsplit

from supervisor.shared.paths import resolve_state_dir
from workers import kinds
from workers.providers.base import AuthError, HttpStatusError, ProviderError
from workers.providers.http import HttpClient, HttpConfig, deadline_in
from workers.providers.schwab_auth import TOKEN_PATH, CredentialsRefused, oauth_error, post_token_form
from workers.providers.schwab_credentials import app_credentials
from workers.providers.schwab_expiry import DEFAULT_WARN_BEFORE_S, utc
from workers.providers.schwab_tokens import LOGIN_COMMAND, TokenFile, Tokens, token_path

AUTHORIZE_PATH = "/v1/oauth/authorize"
EXCHANGE_TIMEOUT_S = 20.0  # the code dies after about 30 s
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
LOGIN_KEYS = ("auth_url", "token_file", "secrets_file", "callback_url", "warn_before")


class LoginFailed(Exception):
    """The login did not work; the message is one line saying why and what to do."""


class BadConfig(Exception):
    """The command line or config file cannot be used (exit 2)."""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog=LOGIN_COMMAND, description=(
        "Log in to Schwab (OAuth authorization code) and write the token file the service uses. "
        "Needed once a week: Schwab's refresh token dies 7 days after its login."))
    parser.add_argument("--config", metavar="PATH", help="mdwd's config file (default: the embedded defaults)")
    parser.add_argument("--state-dir", metavar="DIR", help="where the token file lives (default: the config's "
                        "state_dir; under systemd /var/lib/market-data-worker)")
    parser.add_argument("--callback-url", metavar="URL", help="the app's callback URL as registered with Schwab "
                        "(default: [provider] callback_url)")
    return parser.parse_args(argv)


# -- settings --------------------------------------------------------------------


def read_tables(path):
    """The config file's TOML tables ({} without a file); BadConfig naming the problem."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.loads(f.read().decode("utf-8"))
    except OSError as exc:
        raise BadConfig(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise BadConfig(f"{path}: not a usable TOML file ({type(exc).__name__}); mdwd --check-config "
                        f"{path} says more") from None


def _table(tables, name, source):
    table = tables.get(name, {})
    if not isinstance(table, dict):
        raise BadConfig(f"{source}: {name} must be a table [{name}]")
    return table


def _allowed(key, value):
    """What [provider] `key` allows, when `value` is not that (mdwd's own check of the key)."""
    types, check = kinds.SECTIONS["provider"].keys[key]
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) or not isinstance(value, types):
        return "a " + " or ".join(t.__name__ for t in types)
    return check(value) if check else None


def settings(args, environ):
    """(state_dir, the [provider] table over its defaults, the file's own [provider] table)."""
    source = args.config or "embedded defaults"
    tables = read_tables(args.config)
    own = _table(tables, "provider", source)
    provider = {**tomllib.loads(kinds.REGISTRY.defaults)["provider"], **own}
    for key in LOGIN_KEYS:
        allowed = _allowed(key, provider[key]) if key in provider else None
        if allowed:
            raise BadConfig(f"{source}: provider.{key}: allowed is {allowed}")
    if args.state_dir:
        state_dir = os.path.abspath(args.state_dir)
    else:
        state_dir = resolve_state_dir(_table(tables, "supervisor", source).get("state_dir"), args.config, environ)
    return state_dir, provider, own


# -- the steps ----------------------------------------------------------------------


def authorize_url(auth_url, app_key, callback_url):
    """Schwab's authorize page for this app and callback."""
    return f"{auth_url.rstrip('/')}{AUTHORIZE_PATH}?" + urlencode({"client_id": app_key, "redirect_uri": callback_url})


def _place(url):
    """scheme, host, port and path of a URL, as a browser would compare them."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port, parts.path.rstrip("/") or "/"


def code_from(pasted, callback_url):
    """The authorization code in the pasted redirect URL; LoginFailed saying what is wrong with it."""
    pasted = pasted.strip()
    if not pasted:
        raise LoginFailed("no URL was pasted: paste the whole address the browser was sent to after the Schwab "
                          f"login (it starts with {callback_url} and holds ?code=...)")
    if _place(pasted) != _place(callback_url):
        shown = pasted.split("?", 1)[0][:100]
        raise LoginFailed(f"the pasted URL goes to {shown}, not to the callback URL {callback_url}: paste the "
                          f"address Schwab sent the browser to, or, if the app is registered with another callback "
                          f"URL, set [provider] callback_url (or --callback-url) to exactly that")
    query = parse_qs(urlsplit(pasted).query)
    if "error" in query:
        why = " ".join(query.get("error_description", [])) or query["error"][0]
        raise LoginFailed(f"Schwab did not authorize the app ({query['error'][0]}: {why[:100]}); run "
                          f"{LOGIN_COMMAND} again and choose Allow")
    codes = [c for c in query.get("code", []) if c]
    if not codes:
        raise LoginFailed("the pasted URL has no code= parameter: paste the whole address of the page Schwab sent "
                          "the browser to after \"Done\" (...?code=...&session=...), not the login page's")
    return codes[0]


def exchange(credentials, auth_url, code, callback_url):
    """The token endpoint's answer for the code; LoginFailed if Schwab refuses it or cannot be reached."""
    http = HttpClient(HttpConfig(max_retries=0))
    token_url = auth_url.rstrip("/") + TOKEN_PATH
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": callback_url}
    try:
        answer = post_token_form(http, token_url, credentials, form, deadline_in(EXCHANGE_TIMEOUT_S), (code,))
    except CredentialsRefused as exc:
        raise LoginFailed(str(exc)) from None
    except HttpStatusError as exc:
        if exc.status not in (400, 403):
            raise LoginFailed(f"Schwab's token endpoint failed: {exc}") from None
        raise LoginFailed(f"Schwab refused the authorization code ({oauth_error(exc)}): a code works once, for "
                          f"about 30 seconds, with the callback URL it was issued for; run {LOGIN_COMMAND} again "
                          f"and paste the address at once") from None
    except ProviderError as exc:
        raise LoginFailed(f"Schwab's token endpoint {token_url} could not be reached: {exc}") from None
    finally:
        http.close()
    if not isinstance(answer.get("refresh_token"), str) or not answer["refresh_token"]:
        raise LoginFailed("Schwab's token endpoint answered without a refresh_token; run "
                          f"{LOGIN_COMMAND} again")
    return answer


def _owner(directory):
    """Run as root: the directory owner's (uid, gid), so the service's user can read the file."""
    if os.geteuid() != 0:
        return None
    st = os.stat(directory)
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def write_tokens(path, answer, now):
    """Write the new tokens into `path`, keeping an existing document's shape and other fields."""
    file = TokenFile(path)
    try:
        document = file.read_document()
    except AuthError:
        document = {}  # none yet, or unusable: replaced
    holder = document["token"] if isinstance(document.get("token"), dict) else document
    holder.update({key: answer[key] for key in ("token_type", "scope") if key in answer})
    if "expires_in" in holder:  # the old system's files keep it beside expires_at
        holder["expires_in"] = answer["expires_in"]
    tokens = Tokens(answer["access_token"], answer["refresh_token"], now + float(answer["expires_in"]), document,
                    refresh_issued_at=now)
    directory = os.path.dirname(file.path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        file.save(tokens, owner=_owner(directory))
    except OSError as exc:
        raise LoginFailed(f"cannot write the token file {file.path}: {exc.strerror or exc}") from None
    return tokens


# -- the command ----------------------------------------------------------------------


def login(args, stdin, stdout, environ, wall_clock):
    state_dir, provider, own = settings(args, environ)
    secrets_file = os.path.join(state_dir, provider["secrets_file"]) if provider.get("secrets_file") else None
    try:
        credentials = app_credentials(environ, secrets_file)
    except AuthError as exc:
        raise LoginFailed(str(exc)) from None
    callback = args.callback_url or own.get("callback_url") or credentials.callback_url or provider["callback_url"]
    auth_url, path = provider["auth_url"], token_path(provider, state_dir)
    print(f"Logging in to Schwab for the token file {path}.\n"
          "Open this address in a browser, log in to Schwab and allow the app:\n", file=stdout)
    print(f"    {authorize_url(auth_url, credentials.key, callback)}\n", file=stdout)
    print(f"Schwab then sends the browser to {callback}?code=... (the page may not load: that is fine).\n"
          "Paste that whole address here within 30 seconds:", file=stdout, flush=True)
    code = code_from(stdin.readline(), callback)
    answer = exchange(credentials, auth_url, code, callback)
    now = wall_clock()
    tokens = write_tokens(path, answer, now)
    warn_from = tokens.refresh_expires_at - float(provider.get("warn_before", DEFAULT_WARN_BEFORE_S))
    print(f"Logged in. Wrote {path} (mode 0600); the service "
          f"picks it up by itself.\nThe refresh token dies at {utc(tokens.refresh_expires_at)} (7 days); the "
          f"service warns from {utc(warn_from)}. Run {LOGIN_COMMAND} again before then.", file=stdout)


def main(argv=None, *, stdin=None, stdout=None, stderr=None, environ=None, wall_clock=time.time):
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        login(args, stdin, stdout, os.environ if environ is None else environ, wall_clock)
    except BadConfig as exc:
        print(f"{LOGIN_COMMAND}: {exc}", file=stderr)
        return EXIT_USAGE
    except LoginFailed as exc:
        print(f"{LOGIN_COMMAND}: {exc}", file=stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{LOGIN_COMMAND}: interrupted; the token file is unchanged", file=stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
