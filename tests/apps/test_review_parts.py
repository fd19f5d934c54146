"""Parts of the review apps that need no store: threads, time zones, charts, the launcher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cpms_hub.domain.review import Meeting, Message

pytest.importorskip("panel")


def _msg(i: int, parent: str | None = None) -> Message:
    t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
    return Message(f"m{i}", "c1", "panel-p", f"text {i}", t, parent_id=parent)


def test_thread_order_puts_replies_under_their_parent():
    from cpms_widgets.apps.workspace import thread_order

    msgs = [_msg(1), _msg(2), _msg(3, "m1"), _msg(4, "m3"), _msg(5, "missing")]
    got = [(d, m.id) for d, m in thread_order(msgs)]
    assert got == [(0, "m1"), (1, "m3"), (2, "m4"), (0, "m2"), (0, "m5")]


def test_thread_order_of_500_messages_is_complete():
    from cpms_widgets.apps.workspace import thread_order

    msgs = [_msg(i, f"m{i - 1}" if i % 3 else None) for i in range(500)]
    assert sorted(m.id for _d, m in thread_order(msgs)) == sorted(m.id for m in msgs)


def test_local_times_per_participant():
    from cpms_widgets.apps.workspace import local_times

    start = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    m = Meeting(
        "x",
        "c1",
        "Panel",
        start,
        60,
        "panel-p",
        participants=(("a", "Europe/Paris"), ("b", "America/New_York"), ("c", "Not/AZone")),
    )
    rows = {u: t for u, _tz, t in local_times(m)}
    assert rows["a"].startswith("Wed 2026-07-01 14:00")
    assert rows["b"].startswith("Wed 2026-07-01 08:00")
    assert rows["c"] == "2026-07-01 12:00 UTC"


def test_activity_charts_from_a_report():
    from cpms_widgets.apps.activity_charts import activity_figures

    report = {
        "cases_per_month": [
            {"month": "2026-01", "network": "ERN-A", "cases": 3},
            {"month": "2026-02", "network": "ERN-B", "cases": 1},
        ],
        "time_to_closure": [{"case_id": "abcdef123456", "network": "ERN-A", "days": 12}],
        "contributions_per_panel": [
            {"case_id": "a", "network": "ERN-A", "contributions": 2},
            {"case_id": "b", "network": "ERN-A", "contributions": 0},
        ],
        "by_network": [{"network": "ERN-A", "submitted": 4, "open": 2, "closed": 2}],
    }
    figs = activity_figures(report)
    assert [f.name for f in figs] == [
        "cases_per_month",
        "time_to_closure",
        "contributions_per_panel",
        "by_network",
    ]
    assert list(figs[0].x_range.factors) == ["2026-01", "2026-02"]
    # an empty report still draws (a new network has no activity yet)
    assert len(activity_figures({})) == 4


def test_launcher_keeps_secrets_off_the_command_line():
    from cpms_widgets.apps.launcher import panel_argv, panel_environment

    env = {
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9081/hub/api",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/cpms-review/",
        "JUPYTERHUB_CLIENT_ID": "service-cpms-review",
        "JUPYTERHUB_API_TOKEN": "s3cr3t-token",
        "CPMS_REVIEW_PORT": "9083",
        "CPMS_REVIEW_ORIGINS": "127.0.0.1:9000,localhost:9000",
        "CPMS_REVIEW_SCOPES": "access:services!service=cpms-review",
    }
    argv = panel_argv(env)
    penv = panel_environment(env)
    assert "s3cr3t-token" not in " ".join(argv)
    assert penv["PANEL_OAUTH_SECRET"] == "s3cr3t-token"
    assert penv["PANEL_OAUTH_TOKEN_URL"] == "http://127.0.0.1:9081/hub/api/oauth2/token"
    assert penv["PANEL_OAUTH_AUTHORIZE_URL"] == "/hub/api/oauth2/authorize"
    assert penv["PANEL_OAUTH_REDIRECT_URI"] == "/services/cpms-review/login"
    assert penv["PANEL_USER_KEY"] == "name"
    assert argv[argv.index("--prefix") + 1] == "services/cpms-review"
    assert argv[argv.index("--cookie-path") + 1] == "/services/cpms-review/"
    assert argv.count("--allow-websocket-origin") == 2
    # every start makes new cookie and token-encryption secrets
    assert panel_environment(env)["PANEL_COOKIE_SECRET"] != penv["PANEL_COOKIE_SECRET"]
    with pytest.raises(SystemExit, match="JUPYTERHUB_CLIENT_ID"):
        panel_environment({k: v for k, v in env.items() if k != "JUPYTERHUB_CLIENT_ID"})


def test_review_service_definition():
    from cpms_hub import hubconfig
    from cpms_hub.settings import CpmsSettings

    settings = CpmsSettings(port=9000)
    svc = hubconfig.review_service(settings)
    assert svc["name"] == "cpms-review"
    assert svc["url"] == f"http://127.0.0.1:{settings.review_port}"
    assert hubconfig.STORE_ACCESS in svc["oauth_client_allowed_scopes"]
    assert svc["oauth_redirect_uri"] == "/services/cpms-review/login"
    assert svc["environment"]["CPMS_STORE_URL"].startswith("http://127.0.0.1:")
    roles = {r["name"]: r for r in hubconfig.hub_roles()}
    assert hubconfig.REVIEW_ACCESS in roles["cpms-panel-member"]["scopes"]
    assert hubconfig.REVIEW_ACCESS in roles["cpms-coordinator"]["scopes"]
    assert hubconfig.REVIEW_ACCESS not in roles["cpms-data-scientist"]["scopes"]
    assert hubconfig.REVIEW_ACCESS not in roles["cpms-helpdesk"]["scopes"]
