"""template.yml (ROS, FC 3.0 native types) and s.yaml (Serverless Devs fc3) checked here, because
neither tool refuses a bad file before it reaches the cloud. See tests/support/deploy.py for what
each rule is encoded from."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgescaler import triggers
from tests.support import deploy

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = yaml.safe_load((ROOT / "template.yml").read_text())
SFILE = yaml.safe_load((ROOT / "s.yaml").read_text())
# Values for the parameters without a default, as an operator would pass them.
GIVEN = {
    "CodeBucket": "acme-fc-code",
    "StoreBucket": "acme-edgescaler-state",
    "PrometheusUrl": "http://prometheus.edge.internal:9090",
    "LogProjectName": "acme-edgescaler-logs",
}
S_ENV = {
    "EDGESCALER_ROLE_ARN": "acs:ram::1234567890123456:role/edgescaler-fc",
    "EDGESCALER_STORE_BUCKET": "acme-edgescaler-state",
    "EDGESCALER_PROMETHEUS_URL": "http://prometheus.edge.internal:9090",
    "EDGESCALER_LOG_PROJECT": "acme-edgescaler-logs",
}
EXPECTED_ACTIONS = {
    "cs:ScaleOutCluster",
    "cs:DescribeTaskInfo",
    "cs:DescribeClusterNodes",
    "cs:DescribeClusterTasks",
    "kms:GetSecretValue",
    "oss:PutObject",
    "oss:GetObject",
    "oss:DeleteObject",
    "oss:ListObjects",
    "oss:GetBucketVersioning",
    "log:PostLogStoreLogs",
}
EVAL = deploy.Evaluator(TEMPLATE, GIVEN)


def resources(kind: str) -> list[dict[str, Any]]:
    return [r for r in TEMPLATE["Resources"].values() if r["Type"] == kind]


def one(kind: str) -> dict[str, Any]:
    (found,) = resources(kind)
    props = found["Properties"]
    assert isinstance(props, dict)
    return props


def s_props() -> dict[str, Any]:
    (res,) = SFILE["resources"].values()
    assert res["component"] == "fc3"
    props = deploy.s_resolve(res["props"], SFILE["vars"], S_ENV)
    assert isinstance(props, dict)
    return props


# --------------------------------------------------------------------------- the checkers


@pytest.mark.parametrize(
    ("expr", "ok"),
    [
        ("0 * * * * *", True),
        ("0 0/5 8-18 ? * MON-FRI", True),
        ("0 0 4 1,15 JAN-DEC *", True),
        ("@every 4m", True),
        ("0 * * * *", False),
        ("60 * * * * *", False),
        ("0 */0 * * * *", False),
        ("0 * * 0 * *", False),
        ("0 * 12-3 * * *", False),
        ("? * * * * *", False),
        ("0 0 0 * FOO *", False),
        ("CRON_TZ=Asia/Shanghai 0 * * * * *", False),
        ("@every 0m", False),
    ],
)
def test_the_cron_checker_itself(expr: str, ok: bool) -> None:
    assert (deploy.cron_problems(expr) == []) is ok, deploy.cron_problems(expr)


def test_the_magic_variable_resolver_refuses_what_it_does_not_know() -> None:
    assert deploy.s_resolve("${env('A', 'x')}-${vars.b}", {"b": "y"}, {}) == "x-y"
    with pytest.raises(ValueError, match="unset and no default"):
        deploy.s_resolve("${env('A')}", {}, {})
    with pytest.raises(ValueError, match="no such var"):
        deploy.s_resolve("${vars.nope}", {}, {})
    with pytest.raises(ValueError, match="not a magic variable"):
        deploy.s_resolve("${file('x')}", {}, {})


# --------------------------------------------------------------------------- template.yml


def test_template_is_plain_ros_without_a_transform() -> None:
    assert TEMPLATE["ROSTemplateFormatVersion"] == "2015-09-01"
    assert set(TEMPLATE) <= deploy.TEMPLATE_KEYS
    assert "Transform" not in TEMPLATE


def test_every_resource_uses_known_types_and_property_names() -> None:
    for name, res in TEMPLATE["Resources"].items():
        assert set(res) <= deploy.RESOURCE_KEYS, name
        required, allowed = deploy.ROS_TYPES[res["Type"]]
        props = res["Properties"]
        assert required <= set(props), (name, required - set(props))
        assert set(props) <= allowed, (name, set(props) - allowed)
        for key, value in props.items():
            if (res["Type"], key) in deploy.NESTED:
                assert set(value) <= deploy.NESTED[(res["Type"], key)], (name, key)
            expected = deploy.ROS_LITERAL_TYPES.get(key)
            if expected and not deploy.is_intrinsic(value):
                assert isinstance(value, expected) and not (
                    expected is int and isinstance(value, bool)
                ), (name, key, value)


def test_parameters_are_well_formed_and_defaults_satisfy_their_constraints() -> None:
    for name, p in TEMPLATE["Parameters"].items():
        assert set(p) <= deploy.PARAMETER_KEYS and p["Type"] in deploy.PARAMETER_TYPES, name
        value = GIVEN.get(name, p.get("Default"))
        assert value is not None, f"{name}: no default and no test value"
        if "AllowedValues" in p:
            assert value in p["AllowedValues"], name
        if "AllowedPattern" in p:
            assert re.fullmatch(p["AllowedPattern"], value), name


def test_every_reference_resolves() -> None:
    params = set(TEMPLATE["Parameters"])
    res = set(TEMPLATE["Resources"])
    conditions = set(TEMPLATE.get("Conditions", {}))
    found = list(deploy.references(TEMPLATE))
    assert len(found) > 20  # the walk sees them
    for path, kind, name in found:
        if kind == "Condition":
            assert name in conditions, (path, name)
        elif kind == "GetAtt":
            assert name in res, (path, name)
        else:
            assert name in params | res | deploy.PSEUDO, (path, kind, name)
    for name, r in TEMPLATE["Resources"].items():
        for dep in r.get("DependsOn", []):
            assert dep in res, (name, dep)


def test_the_function() -> None:
    f = one("ALIYUN::FC3::Function")
    assert f["Runtime"] == "python3.10" and f["Runtime"] in deploy.FC3_RUNTIMES
    assert f["Handler"] == "index.handler"
    assert 1 <= f["Timeout"] <= 86400
    assert 128 <= f["MemorySize"] <= 32768 and f["MemorySize"] % 64 == 0
    assert f["DiskSize"] in (512, 10240)
    cpu = f["Cpu"]
    assert 0.05 <= cpu <= 16 and abs(cpu / 0.05 - round(cpu / 0.05)) < 1e-9
    assert 1 <= (f["MemorySize"] / 1024) / cpu <= 4, "cpu:memory(GB) must be 1:1..1:4"
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", EVAL({"Ref": "FunctionName"}))
    code = f["Code"]
    assert set(code) == {"OssBucketName", "OssObjectName"}
    assert "InstanceConcurrency" not in f  # only custom runtimes use it in FC 3.0


def test_the_handler_exists_in_the_package() -> None:
    module, _, func = one("ALIYUN::FC3::Function")["Handler"].rpartition(".")
    source = ROOT / "functions" / "scaler" / (module.replace(".", "/") + ".py")
    tree = ast.parse(source.read_text())
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func]
    assert len(defs) == 1 and [a.arg for a in defs[0].args.args] == ["event", "context"]


def test_the_environment() -> None:
    env = EVAL(one("ALIYUN::FC3::Function")["EnvironmentVariables"])
    assert env == {
        "EDGESCALER_POLICY_DIR": "/code/policies",
        "EDGESCALER_STORE": "oss://acme-edgescaler-state/edgescaler",
        "EDGESCALER_OSS_ENDPOINT": "https://oss-cn-hangzhou-internal.aliyuncs.com",
        "EDGESCALER_PROMETHEUS_URL": "http://prometheus.edge.internal:9090",
        "EDGESCALER_DRY_RUN": "true",
    }
    override = deploy.Evaluator(TEMPLATE, {**GIVEN, "OssEndpoint": "http://127.0.0.1:9000"})
    got = override(one("ALIYUN::FC3::Function")["EnvironmentVariables"])
    assert got["EDGESCALER_OSS_ENDPOINT"] == "http://127.0.0.1:9000"
    for key, value in env.items():
        # FC: names start with a letter; FC_* is reserved; values are strings; 4 KB in total.
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key) and not key.startswith("FC_")
        assert isinstance(value, str)
    assert len(json.dumps(env)) < 4096


def test_the_timer() -> None:
    t = one("ALIYUN::FC3::Trigger")
    assert t["TriggerType"] == "timer"
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,127}", t["TriggerName"])
    config = t["TriggerConfig"]
    assert set(config) == {"cronExpression", "enable", "payload"} and config["enable"] is True
    assert deploy.cron_problems(config["cronExpression"]) == []
    event = {"triggerName": t["TriggerName"], "triggerTime": "2026-11-27T07:05:00Z"}
    request = triggers.parse_event(json.dumps({**event, "payload": config["payload"]}))
    assert (request.trigger, request.policies) == ("timer", None)


def test_no_async_retries_and_one_instance() -> None:
    a = one("ALIYUN::FC3::AsyncInvokeConfig")
    assert a["MaxAsyncRetryAttempts"] == 0 and 1 <= a["MaxAsyncEventAgeInSeconds"] <= 604800
    assert one("ALIYUN::FC3::ConcurrencyConfig")["ReservedConcurrency"] == 1
    for kind in (
        "ALIYUN::FC3::AsyncInvokeConfig",
        "ALIYUN::FC3::ConcurrencyConfig",
        "ALIYUN::FC3::Trigger",
    ):
        assert one(kind)["FunctionName"] == {"Fn::GetAtt": ["Function", "FunctionName"]}


def test_logs_go_to_the_created_project_and_logstore() -> None:
    project = one("ALIYUN::SLS::Project")
    store = one("ALIYUN::SLS::Logstore")
    log = one("ALIYUN::FC3::Function")["LogConfig"]
    assert project["Name"] == {"Ref": "LogProjectName"}
    assert store["ProjectName"] == log["Project"] == {"Fn::GetAtt": ["LogProject", "Name"]}
    assert store["LogstoreName"] == log["Logstore"] == {"Ref": "LogstoreName"}
    assert log["LogBeginRule"] in ("DefaultRegex", "None")


def statements() -> list[dict[str, Any]]:
    (policy,) = one("ALIYUN::RAM::Role")["Policies"]
    doc = policy["PolicyDocument"]
    assert doc["Version"] == "1"
    return list(EVAL(doc["Statement"]))


def test_the_role_is_trusted_by_fc_only() -> None:
    doc = one("ALIYUN::RAM::Role")["AssumeRolePolicyDocument"]
    (st,) = doc["Statement"]
    assert st == {
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Principal": {"Service": ["fc.aliyuncs.com"]},
    }
    assert one("ALIYUN::FC3::Function")["Role"] == {"Fn::GetAtt": ["Role", "Arn"]}


def test_the_role_has_exactly_the_actions_it_needs() -> None:
    actions: list[str] = []
    for st in statements():
        assert st["Effect"] == "Allow"
        listed = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        actions += listed
        for a in listed:
            assert "*" not in a and re.fullmatch(r"[a-z]+:[A-Za-z]+", a), a
    assert len(actions) == len(set(actions))
    assert set(actions) == EXPECTED_ACTIONS


def test_the_role_is_scoped_to_the_secret_bucket_prefix_and_logstore() -> None:
    by_action = {
        a: st
        for st in statements()
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    }

    def resources_of(action: str) -> list[str]:
        res = by_action[action]["Resource"]
        return res if isinstance(res, list) else [res]

    for action in EXPECTED_ACTIONS:
        if not action.startswith("cs:"):
            assert "*" not in resources_of(action), action
    assert resources_of("kms:GetSecretValue") == [
        "acs:kms:cn-hangzhou:1234567890123456:secret/edgescaler/ens-login-password"
    ]
    for action in ("oss:PutObject", "oss:GetObject", "oss:DeleteObject"):
        assert resources_of(action) == [
            "acs:oss:*:1234567890123456:acme-edgescaler-state/edgescaler/*"
        ]
    for action in ("oss:ListObjects", "oss:GetBucketVersioning"):
        assert resources_of(action) == ["acs:oss:*:1234567890123456:acme-edgescaler-state"]
    assert by_action["oss:ListObjects"]["Condition"] == {
        "StringLike": {"oss:Prefix": ["edgescaler/*"]}
    }
    assert "Condition" not in by_action["oss:GetBucketVersioning"]
    assert resources_of("log:PostLogStoreLogs") == [
        "acs:log:cn-hangzhou:1234567890123456:project/acme-edgescaler-logs/logstore/edgescaler"
    ]


# --------------------------------------------------------------------------- s.yaml


def test_s_yaml_is_fc3_edition_3() -> None:
    assert SFILE["edition"] == "3.0.0"
    assert set(SFILE) <= {"edition", "name", "access", "vars", "resources", "template", "flow"}
    (res,) = SFILE["resources"].values()
    assert res["component"] == "fc3" and set(res) == {"component", "props"}


def test_s_yaml_props_follow_the_fc3_schema() -> None:
    p = s_props()
    assert set(p) <= deploy.FC3_PROPS, set(p) - deploy.FC3_PROPS
    assert {"functionName", "region", "runtime", "code", "handler"} <= set(p)
    assert p["runtime"] in deploy.FC3_RUNTIMES_S and p["region"] in deploy.FC3_REGIONS
    assert isinstance(p["timeout"], int) and 1 <= p["timeout"] <= 86400
    m = p["memorySize"]
    assert isinstance(m, int) and m % 64 == 0 and 128 <= m <= 32768
    assert isinstance(p["cpu"], float) and 0.05 <= p["cpu"] <= 16
    assert 1 <= (m / 1024) / p["cpu"] <= 4 and abs(p["cpu"] / 0.05 - round(p["cpu"] / 0.05)) < 1e-9
    assert p["diskSize"] in (512, 10240) and isinstance(p["internetAccess"], bool)
    assert re.fullmatch(r"acs:ram::\d+:role/[A-Za-z0-9.-]{1,64}|[A-Za-z0-9.-]{1,64}", p["role"])
    assert all(isinstance(v, str) for v in p["environmentVariables"].values())
    log = p["logConfig"]
    assert set(log) <= deploy.FC3_LOG_CONFIG and {"project", "logstore"} <= set(log)
    assert log["logBeginRule"] in ("DefaultRegex", "None")
    a = p["asyncInvokeConfig"]
    assert set(a) <= deploy.FC3_ASYNC and a["maxAsyncRetryAttempts"] == 0
    assert 1 <= a["maxAsyncEventAgeInSeconds"] <= 2592000
    assert p["concurrencyConfig"] == {"reservedConcurrency": 1}
    for t in p["triggers"]:
        assert set(t) <= deploy.FC3_TRIGGER and {
            "triggerName",
            "triggerType",
            "triggerConfig",
        } <= set(t)
        assert t["triggerType"] in deploy.FC3_TRIGGER_TYPES
    (timer,) = p["triggers"]
    assert (
        set(timer["triggerConfig"]) == deploy.FC3_TIMER and timer["triggerConfig"]["enable"] is True
    )
    assert deploy.cron_problems(timer["triggerConfig"]["cronExpression"]) == []


def test_s_yaml_code_is_what_edgescaler_package_builds() -> None:
    from edgescaler import package

    p = s_props()
    assert p["code"] == "./build/scaler"  # `edgescaler package --out build` -> build/scaler
    assert (ROOT / "functions" / "scaler" / "index.py").is_file()
    assert "scaler" in package.build.__doc__  # the staging directory it documents


def test_s_yaml_refuses_to_deploy_without_its_required_settings() -> None:
    (res,) = SFILE["resources"].values()
    for var in S_ENV:
        with pytest.raises(ValueError, match=var):
            deploy.s_resolve(
                res["props"], SFILE["vars"], {k: v for k, v in S_ENV.items() if k != var}
            )


# --------------------------------------------------------------------------- agreement


def test_template_and_s_yaml_agree() -> None:
    f = one("ALIYUN::FC3::Function")
    t = one("ALIYUN::FC3::Trigger")
    a = one("ALIYUN::FC3::AsyncInvokeConfig")
    p = s_props()
    (timer,) = p["triggers"]
    assert (p["runtime"], p["handler"], p["timeout"], p["memorySize"], p["cpu"], p["diskSize"]) == (
        f["Runtime"], f["Handler"], f["Timeout"], f["MemorySize"], f["Cpu"], f["DiskSize"],
    )  # fmt: skip
    assert p["internetAccess"] == f["InternetAccess"]
    assert p["functionName"] == TEMPLATE["Parameters"]["FunctionName"]["Default"]
    assert (timer["triggerName"], timer["triggerType"], timer["triggerConfig"]) == (
        t["TriggerName"], t["TriggerType"], t["TriggerConfig"],
    )  # fmt: skip
    assert set(p["environmentVariables"]) == set(f["EnvironmentVariables"])
    assert p["environmentVariables"] == EVAL(f["EnvironmentVariables"])
    assert p["asyncInvokeConfig"] == {
        "maxAsyncRetryAttempts": a["MaxAsyncRetryAttempts"],
        "maxAsyncEventAgeInSeconds": a["MaxAsyncEventAgeInSeconds"],
    }
    assert (
        p["concurrencyConfig"]["reservedConcurrency"]
        == one("ALIYUN::FC3::ConcurrencyConfig")["ReservedConcurrency"]
    )
    log = f["LogConfig"]
    assert (p["logConfig"]["logBeginRule"], p["logConfig"]["enableRequestMetrics"]) == (
        log["LogBeginRule"], log["EnableRequestMetrics"],
    )  # fmt: skip


def test_the_readme_policy_for_s_is_the_templates_policy() -> None:
    text = (ROOT / "README.md").read_text()
    after = text[text.index("`policy.json`") :]
    block = after[after.index("```json\n") + 8 : after.index("\n```", after.index("```json"))]
    (policy,) = one("ALIYUN::RAM::Role")["Policies"]
    assert json.loads(block) == EVAL(policy["PolicyDocument"])


def test_the_code_object_stays_outside_the_store_prefix() -> None:
    # The same bucket may hold both: the role may delete under StorePrefix/, never the code.
    assert not EVAL({"Ref": "CodeObject"}).startswith(EVAL({"Ref": "StorePrefix"}) + "/")
