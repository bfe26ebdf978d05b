from __future__ import annotations

from pathlib import Path

import pytest

from dermnode.kernel.addresses import Address
from dermnode.kernel.errors import ConfigurationError
from dermnode.kernel.settings import Peer, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_shipped_yaml_documents_the_defaults() -> None:
    loaded = load_settings(REPO / "config" / "dermnode.yaml", {})
    defaults = Settings()
    assert loaded.model_dump(exclude={"allowed_peers"}) == defaults.model_dump(exclude={"allowed_peers"})
    assert loaded.allowed_peers == (Peer(ae_title="STORESCU"),)


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ae_title: FROMFILE\nport: 1000\nallowed_peers: [A]\n")
    env = {"DERMNODE_PORT": "2000", "DERMNODE_ALLOW": "B@127.0.0.1:4242,C", "DERMNODE_QUIET_PERIOD": "7"}
    s = load_settings(cfg, env, {"port": 3000})
    assert s.ae_title == "FROMFILE"
    assert s.port == 3000
    assert s.allowed_peers == (Peer(ae_title="B", host="127.0.0.1", port=4242), Peer(ae_title="C"))
    assert s.completion.quiet_period_s == 7.0


def test_destinations_parse_fixed_and_sender() -> None:
    s = load_settings(None, {}, {"destinations": ["PACS@10.0.0.1:104", "sender"]})
    assert s.destinations == (Address("PACS", "10.0.0.1", 104), "sender")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ae_title": "THIS_TITLE_IS_FAR_TOO_LONG"}, r"ae_title.*not a valid AE title"),
        ({"port": 70000}, r"port: Input should be less than or equal to 65535"),
        ({"destinations": ["PACS@nohostport"]}, r"is not AE@HOST:PORT"),
        ({"device": "tpu"}, r"device: Input should be 'cpu', 'cuda' or 'auto'"),
        ({"no_such_key": 1}, r"no_such_key: Extra inputs are not permitted"),
        ({"allowed_peers": ["PACS@pacs.example.org"]}, r"host 'pacs.example.org' must be an IP address"),
        ({"max_decode_s": 0}, r"max_decode_s: Input should be greater than 0"),
        ({"max_decode_s": 601}, r"max_decode_s: Input should be less than or equal to 600"),
        ({"decode_workers": 0}, r"decode_workers: Input should be greater than or equal to 1"),
    ],
)
def test_bad_settings_say_what_to_fix(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(None, {}, overrides)


def test_missing_and_malformed_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist: check --config"):
        load_settings(tmp_path / "absent.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: [1,\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_settings(bad, {})


def test_per_peer_completion_policy() -> None:
    s = load_settings(None, {}, {"allowed_peers": [
        {"ae_title": "ORTHANC", "completion": {"quiet_period_s": 9, "expected_instances": 3}}, "OTHER"]})
    assert s.completion_for("ORTHANC").expected_instances == 3
    assert s.completion_for("OTHER") == s.completion


def test_the_yaml_examples_work_when_uncommented_as_documented(tmp_path: Path) -> None:
    text = (REPO / "config" / "dermnode.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    for key, placeholder in (("destinations", "destinations: []"), ("tls", "tls: null")):
        start = lines.index(f"# {key}:")
        end = start + 1
        while end < len(lines) and lines[end].startswith("#  "):
            end += 1
        lines[start:end] = [line[2:] for line in lines[start:end]]
        lines.remove(placeholder)
    cfg = tmp_path / "uncommented.yaml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(cfg, {})
    assert [d if isinstance(d, str) else d.describe() for d in settings.destinations] == [
        "PACS@127.0.0.1:4242", "sender"]
    assert settings.tls is not None and settings.tls.require_client_certificate


def test_deliveries_never_wait_in_redis_so_a_long_back_off_is_fine_with_a_broker() -> None:
    settings = load_settings(None, {}, {"send_backoff_max_s": 3600, "broker_url": "redis://127.0.0.1:6379/0"})
    assert settings.send_backoff_max_s > settings.visibility_timeout_s


def test_the_worker_api_url_must_be_http_and_says_so() -> None:
    assert load_settings(None, {"DERMNODE_WORKER_API_URL": "http://node.example:11180/"}).worker_api_url == (
        "http://node.example:11180")
    with pytest.raises(ConfigurationError, match="must be an http:// or https:// URL"):
        load_settings(None, {"DERMNODE_WORKER_API_URL": "node.example:11180"})


def test_admin_token_comes_from_the_environment_and_is_never_shown() -> None:
    settings = load_settings(None, {"DERMNODE_ADMIN_TOKEN": "s3cr3t-token", "DERMNODE_HTTP_PORT": "8080"})
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "s3cr3t-token"
    assert settings.http_port == 8080 and settings.http_bind_address == "127.0.0.1"
    assert "s3cr3t-token" not in repr(settings) and "s3cr3t-token" not in str(settings.model_dump())


def test_a_killed_worker_costs_about_two_minutes_by_default() -> None:
    assert Settings().stalled_after_s == 120.0


def test_stall_and_visibility_come_from_flags_and_environment() -> None:
    from dermnode.cli import build_parser, settings_from

    args = build_parser().parse_args(["serve", "--stalled-after", "90", "--visibility-timeout", "300"])
    settings = settings_from(args)
    assert (settings.stalled_after_s, settings.visibility_timeout_s) == (90.0, 300.0)
    env = load_settings(None, {"DERMNODE_STALLED_AFTER_S": "45", "DERMNODE_VISIBILITY_TIMEOUT_S": "120"})
    assert (env.stalled_after_s, env.visibility_timeout_s) == (45.0, 120.0)



def test_decode_limits_come_from_the_environment() -> None:
    assert (Settings().max_decode_s, Settings().decode_workers) == (30.0, 2)
    env = load_settings(None, {"DERMNODE_MAX_DECODE_S": "2.5", "DERMNODE_DECODE_WORKERS": "1"})
    assert (env.max_decode_s, env.decode_workers) == (2.5, 1)
