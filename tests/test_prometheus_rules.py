"""deploy/: the Prometheus alerting rules and the Grafana dashboard stay true to the API's /metrics.

- every metric a rule or a dashboard panel reads is one the API really exports
  (scraped from an app over a fake mdwd and a filled store), so they cannot
  drift from api/metrics.py;
- every alert waits (`for:`) or says why not, names what to run, and has a
  promtool unit test that makes it fire and one where it stays quiet;
- `promtool check rules` and `promtool test rules` pass (marked `promtool`:
  Debian's promtool, which make test unpacks into .venv; skipped without it),
  and the unit tests fail when an alert's expression is broken.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.metrics import FAILURE_REASONS
from api.status import StatusSource
from supervisor.shared.control_client import ControlClient
from supervisor.states import StopReason
from tests.api_support import get, scanner_rows
from tests.fake_control import worker_row
from tests.promql_names import grafana_label_values_metric, metric_names
from workers.store import StoreReader

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "mdw-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "mdw-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "market-data-worker.json"
README = ROOT / "README.md"

# Series Prometheus makes itself for every scrape target, not read from /metrics.
PROMETHEUS_OWN = {"up"}


def promtool():
    return shutil.which("promtool") or next(
        (str(p) for p in [ROOT / ".venv" / "promtool" / "bin" / "promtool"] if os.access(p, os.X_OK)), None)


needs_promtool = pytest.mark.skipif(
    promtool() is None, reason="promtool not found (Debian's prometheus package; `make test` unpacks it into .venv)")


def rules():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alerts():
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def dashboard_panels(panels=None):
    for panel in json.loads(DASHBOARD.read_text())["panels"] if panels is None else panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


@pytest.fixture
def exported(state_dir, control):
    """The sample names /metrics serves with every family present: workers (one stopped on purpose),
    datasets, and a Schwab refresh token."""
    control.rows = scanner_rows() + [worker_row("spare", kind="vpb", wanted=False, healthy=False, state="STOPPED")]
    app = create_app(StoreReader(state_dir), StatusSource(ControlClient(control.path, timeout=2.0), ttl=0.0),
                     refresh_token_expiry=lambda: 86400.0)
    answer = get(app, "/metrics")
    assert answer.status == 200
    return {sample.name for family in text_string_to_metric_families(answer.body.decode())
            for sample in family.samples}


# -- the names ---------------------------------------------------------------

def test_the_name_finder_sees_metrics_and_only_metrics():
    assert metric_names('sum by (worker, reason) (increase(mdw_worker_restarts_total{reason=~"a|b"}[15m])) '
                        '>= 5 and on(instance) group_left(x) other_metric offset 5m') == {
        "mdw_worker_restarts_total", "other_metric"}
    assert metric_names('histogram_quantile(0.95, sum by (le) (rate(h_bucket{instance=~"$instance"}'
                        '[$__rate_interval]))) * 60') == {"h_bucket"}
    assert metric_names("-gauge >= 0 unless absent(up)") == {"gauge", "up"}
    assert grafana_label_values_metric("label_values(mdw_supervisor_up, instance)") == "mdw_supervisor_up"


def test_every_metric_the_rules_read_is_one_the_api_exports(exported):
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        assert names <= exported | PROMETHEUS_OWN, f"{rule['alert']} reads {sorted(names - exported)}, " \
                                                    f"which /metrics does not export"


def test_every_metric_the_dashboard_reads_is_one_the_api_exports(exported):
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [(p["title"], t["expr"]) for p in dashboard_panels() for t in p.get("targets", ())]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            expressions.append((f"${variable['name']}", grafana_label_values_metric(query)))
    assert len(expressions) >= 10
    for title, expr in expressions:
        assert expr, f"{title}: an expression this test cannot read"
        names = metric_names(expr)
        assert names and names <= exported, f"{title} reads {sorted(names - exported)}, which /metrics does not export"


def test_every_metric_family_is_on_the_dashboard(exported):
    """A metric the API exports and no panel shows is a metric nobody sees."""
    shown = {n for p in dashboard_panels() for t in p.get("targets", ()) for n in metric_names(t["expr"])}
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported}
    assert {re.sub(r"_(bucket|sum|count)$", "", n) for n in shown} >= families - {"mdw_worker_wanted"}


def test_the_rules_scrape_job_is_the_one_the_readme_configures():
    jobs = set(re.findall(r'\bup\{job="([^"]+)"\}', RULES.read_text()))
    assert jobs and jobs <= set(re.findall(r"job_name:\s*(\S+)", README.read_text()))


# -- the metrics the rules need ------------------------------------------------

def test_metrics_say_which_workers_should_run_and_start_failure_counts_at_zero(exported, state_dir, control):
    control.rows = [worker_row("watchlist", restarts_by_reason={"hang": 2}),
                    worker_row("vpb", wanted=False, healthy=False, state="STOPPED", restarts_by_reason={})]
    app = create_app(StoreReader(state_dir), StatusSource(ControlClient(control.path, timeout=2.0), ttl=0.0))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(get(app, "/metrics").body.decode()) for s in f.samples}
    assert samples[("mdw_worker_wanted", (("worker", "watchlist"),))] == 1.0
    assert samples[("mdw_worker_wanted", (("worker", "vpb"),))] == 0.0
    assert samples[("mdw_worker_restarts_total", (("reason", "hang"), ("worker", "watchlist")))] == 2.0
    # a first hang kill must be an increase from 0, or increase() in MdwWorkerHangKilled misses it
    for reason in ("hang", "crash"):
        assert samples[("mdw_worker_restarts_total", (("reason", reason), ("worker", "vpb")))] == 0.0


def test_the_failure_reasons_exported_at_zero_are_the_supervisors():
    assert set(FAILURE_REASONS) == {r.value for r in StopReason} - {"manual", "config", "shutdown"}
    loop = alerts()["MdwWorkerRestartLoop"]["expr"]
    assert set(re.search(r'reason=~"([^"]+)"', loop).group(1).split("|")) == set(FAILURE_REASONS)


# -- the alerts ----------------------------------------------------------------

def test_the_alerts_cover_the_failures_the_issue_names():
    assert {"MdwApiUnreachable", "MdwWorkerDown", "MdwWorkerHangKilled", "MdwDatasetStale",
            "MdwSchwabTokenExpiring", "MdwSchwabTokenDead"} <= set(alerts())


@pytest.mark.parametrize("name", sorted(alerts()))
def test_each_alert_has_a_severity_and_says_what_to_run(name):
    rule = alerts()[name]
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert set(rule["annotations"]) == {"summary", "description"}
    assert re.search(r"`(mdwctl|mdw-schwab-login|systemctl|journalctl|curl)\b", rule["annotations"]["description"])
    # a state (a gauge) must hold for a while; an event (a counter's increase) fires at once
    assert "for" in rule or re.search(r"\b(increase|rate)\(", rule["expr"]) or "schwab" in rule["expr"], name


def test_each_alert_has_a_unit_test_that_fires_it_and_one_that_does_not():
    firing, quiet = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == set(alerts()) and quiet == set(alerts())


# -- promtool --------------------------------------------------------------------

def run_promtool(*args, cwd):
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.promtool
@needs_promtool
def test_promtool_checks_the_rules():
    result = run_promtool("check", "rules", str(RULES), cwd=ROOT)
    assert result.returncode == 0 and f"SUCCESS: {len(rules())} rules found" in result.stdout, result


@pytest.mark.promtool
@needs_promtool
def test_promtool_unit_tests_of_every_alert_pass():
    result = run_promtool("test", "rules", str(RULE_TESTS), cwd=ROOT)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


@pytest.mark.promtool
@needs_promtool
def test_promtool_unit_tests_fail_when_an_alert_never_fires(tmp_path):
    """The unit tests have teeth: with any one alert's expression made to match nothing, they fail."""
    for name in alerts():
        document = yaml.safe_load(RULES.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == name:
                    rule["expr"] = "vector(1) == 0"
        (tmp_path / "mdw-rules.yml").write_text(yaml.safe_dump(document))
        shutil.copy(RULE_TESTS, tmp_path / "mdw-rules.test.yml")
        result = run_promtool("test", "rules", "mdw-rules.test.yml", cwd=tmp_path)
        assert result.returncode != 0 and f"alertname: {name}," in result.stdout + result.stderr, name


# -- the dashboard ---------------------------------------------------------------

def test_the_dashboard_imports_anywhere():
    """Valid JSON with unique panel ids, every query on the datasource variable, panels within the grid."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "market-data-worker" and dashboard["title"]
    panels = list(dashboard_panels())
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        for target in panel.get("targets", ()):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert 'instance=~"$instance"' in target["expr"], panel["title"]
