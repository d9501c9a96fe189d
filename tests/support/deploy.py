"""What template.yml and s.yaml may contain, encoded from their sources, and small checkers.

Neither deploy tool stops a bad file for us (fc3 only logs schema failures at debug level;
ROS reports errors at stack creation, in the cloud), so the tests check both files here.

Sources (re-check them when a tool changes):

* ROS resource types — ROS developer reference pages ``aliyun-fc3-function``,
  ``aliyun-fc3-trigger``, ``aliyun-fc3-asyncinvokeconfig``, ``aliyun-fc3-concurrencyconfig``,
  ``aliyun-ram-role``, ``aliyun-sls-logstore`` (help.aliyun.com/zh/ros/developer-reference/,
  2024-2026), ``ALIYUN::SLS::Project`` as used by aliyun/ros-templates; nested property names and
  validator ranges of FC3 Function as generated in ROS CDK's ``@alicloud/ros-cdk-fc3``
  (``RosFunctionPropsValidator``: MemorySize 128..65536, Timeout 1..86400, Cpu 0.05..16).
* fc3 props — devsapp/fc3 ``src/schema.json`` at 4ca1c1b8 (2026-05-28).
* Cron — FC time trigger docs: 6 fields (seconds minutes hours day-of-month month day-of-week),
  ``* , - ? /``, UTC unless ``CRON_TZ=`` is prefixed; or ``@every <n>m|h``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# --------------------------------------------------------------------------- ROS

TEMPLATE_KEYS = {
    "ROSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Mappings",
    "Conditions",
    "Resources",
    "Outputs",
}
RESOURCE_KEYS = {"Type", "Properties", "DependsOn", "Condition", "DeletionPolicy", "Metadata"}
PARAMETER_TYPES = {"String", "Number", "CommaDelimitedList", "Json", "Boolean"}
PARAMETER_KEYS = {
    "Type",
    "Default",
    "AllowedValues",
    "AllowedPattern",
    "MaxLength",
    "MinLength",
    "MaxValue",
    "MinValue",
    "NoEcho",
    "Description",
    "ConstraintDescription",
    "Label",
}
PSEUDO = {
    "ALIYUN::StackName",
    "ALIYUN::StackId",
    "ALIYUN::Region",
    "ALIYUN::AccountId",
    "ALIYUN::TenantId",
    "ALIYUN::ResourceGroupId",
    "ALIYUN::NoValue",
}
FC3_RUNTIMES = {
    "nodejs8", "nodejs10", "nodejs12", "nodejs14", "nodejs16", "nodejs18", "nodejs20", "go1",
    "python3", "python3.9", "python3.10", "java8", "java11", "php7.2", "dotnetcore3.1", "custom",
    "custom.debian10", "custom-container",
}  # fmt: skip

# type -> (required, allowed) property names; nested maps in NESTED.
ROS_TYPES: dict[str, tuple[set[str], set[str]]] = {
    "ALIYUN::FC3::Function": (
        {"FunctionName", "Handler", "Runtime"},
        {
            "FunctionName", "Handler", "Runtime", "Cpu", "CustomContainerConfig", "Code",
            "CustomRuntimeConfig", "CustomDns", "Description", "DiskSize", "EnvironmentVariables",
            "GpuConfig", "InstanceLifecycleConfig", "InternetAccess", "InstanceConcurrency",
            "Layers", "LogConfig", "MemorySize", "NasConfig", "OssMountConfig", "Role",
            "TracingConfig", "Timeout", "VpcConfig", "DisableOndemand", "SessionAffinityConfig",
            "InstanceIsolationMode", "SessionAffinity", "Tags",
        },
    ),
    "ALIYUN::FC3::Trigger": (
        {"FunctionName", "TriggerType", "TriggerName", "TriggerConfig"},
        {
            "FunctionName", "TriggerType", "TriggerName", "TriggerConfig", "Description",
            "InvocationRole", "Qualifier", "SourceArn",
        },
    ),
    "ALIYUN::FC3::AsyncInvokeConfig": (
        {"FunctionName"},
        {
            "FunctionName", "AsyncTask", "DestinationConfig", "MaxAsyncEventAgeInSeconds",
            "MaxAsyncRetryAttempts",
        },
    ),
    "ALIYUN::FC3::ConcurrencyConfig": (
        {"FunctionName", "ReservedConcurrency"},
        {"FunctionName", "ReservedConcurrency"},
    ),
    "ALIYUN::RAM::Role": (
        {"RoleName", "AssumeRolePolicyDocument"},
        {
            "RoleName", "Description", "AssumeRolePolicyDocument", "MaxSessionDuration",
            "Policies", "IgnoreExisting", "DeletionForce", "PolicyAttachments",
        },
    ),
    "ALIYUN::SLS::Project": ({"Name"}, {"Name", "Description", "Tags"}),
    "ALIYUN::SLS::Logstore": (
        {"ProjectName", "LogstoreName"},
        {
            "ProjectName", "ShardCount", "AutoSplit", "MaxSplitShard", "LogstoreName",
            "AppendMeta", "TTL", "EnableTracking", "PreserveStorage", "EncryptConf", "Mode",
        },
    ),
}  # fmt: skip
NESTED: dict[tuple[str, str], set[str]] = {
    ("ALIYUN::FC3::Function", "Code"): {
        "SourceCode", "ZipFile", "Checksum", "OssObjectName", "OssBucketName",
    },
    ("ALIYUN::FC3::Function", "LogConfig"): {
        "Project", "LogBeginRule", "Logstore", "EnableInstanceMetrics", "EnableRequestMetrics",
    },
}  # fmt: skip
# Literal types where a property is not an intrinsic function.
ROS_LITERAL_TYPES: dict[str, type | tuple[type, ...]] = {
    "Timeout": int,
    "MemorySize": int,
    "DiskSize": int,
    "Cpu": (int, float),
    "InternetAccess": bool,
    "Runtime": str,
    "Handler": str,
    "TriggerType": str,
    "TriggerName": str,
    "MaxAsyncRetryAttempts": int,
    "MaxAsyncEventAgeInSeconds": int,
    "ReservedConcurrency": int,
    "TTL": int,
    "ShardCount": int,
    "EnvironmentVariables": dict,
    "TriggerConfig": dict,
}

INTRINSICS = {"Ref", "Fn::Sub", "Fn::GetAtt", "Fn::If", "Fn::Join", "Fn::Not", "Fn::Equals"}


def is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in INTRINSICS


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, node) of a YAML tree."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}/{i}")


_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


def references(template: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(path, kind, name) for every Ref, GetAtt, Fn::Sub variable and Fn::If condition."""
    for path, node in walk(template):
        if not is_intrinsic(node):
            continue
        ((fn, arg),) = node.items()
        if fn == "Ref":
            yield path, "Ref", arg
        elif fn == "Fn::GetAtt":
            yield path, "GetAtt", arg[0]
        elif fn == "Fn::If":
            yield path, "Condition", arg[0]
        elif fn == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            for name in _SUB_VAR.findall(text):
                if name not in local:
                    yield path, "Sub", name.split(".")[0] if "::" not in name else name


class Evaluator:
    """Evaluates the intrinsics this project uses, with parameter values (defaults + given)."""

    def __init__(self, template: Mapping[str, Any], given: Mapping[str, str]) -> None:
        self.t = template
        self.params = {
            k: given.get(k, p.get("Default")) for k, p in template.get("Parameters", {}).items()
        }
        self.pseudo = {"ALIYUN::Region": "cn-hangzhou", "ALIYUN::AccountId": "1234567890123456"}

    def __call__(self, value: Any) -> Any:
        if is_intrinsic(value):
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.pseudo.get(arg, self.params.get(arg, f"<{arg}>"))
            if fn == "Fn::GetAtt":
                return f"<{arg[0]}.{arg[1]}>"
            if fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                scope = {**self.params, **self.pseudo, **{k: self(v) for k, v in local.items()}}
                return _SUB_VAR.sub(lambda m: str(scope.get(m[1], f"<{m[1]}>")), text)
            if fn == "Fn::If":
                cond = self(self.t["Conditions"][arg[0]])
                return self(arg[1] if cond else arg[2])
            if fn == "Fn::Not":
                return not self(arg[0])
            if fn == "Fn::Equals":
                return self(arg[0]) == self(arg[1])
            if fn == "Fn::Join":
                return arg[0].join(str(self(v)) for v in arg[1])
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value


# --------------------------------------------------------------------------- fc3

FC3_PROPS = {
    "annotations", "asyncInvokeConfig", "code", "concurrencyConfig", "cpu", "customContainerConfig",
    "customDNS", "customRuntimeConfig", "description", "diskSize", "enableLongLiving", "endpoint",
    "environmentVariables", "functionName", "gpuConfig", "handler", "instanceConcurrency",
    "instanceIsolationMode", "instanceLifecycleConfig", "internetAccess", "layers", "logConfig",
    "memorySize", "nasConfig", "ossMountConfig", "provisionConfig", "region", "resourceGroupId",
    "role", "runtime", "scalingConfig", "sessionAffinity", "sessionAffinityConfig", "supplement",
    "tags", "timeout", "tracingConfig", "triggers", "vpcBinding", "vpcConfig",
}  # fmt: skip
FC3_RUNTIMES_S = {
    "custom", "custom-container", "micro-sandbox", "custom.debian10", "custom.debian11",
    "custom.debian12", "dotnetcore2.1", "dotnetcore3.1", "go1", "java11", "java8", "nodejs10",
    "nodejs12", "nodejs14", "nodejs16", "nodejs18", "nodejs20", "nodejs8", "php7.2", "python2.7",
    "python3", "python3.10", "python3.12", "python3.9",
}  # fmt: skip
FC3_REGIONS = {
    "ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2",
    "ap-southeast-3", "ap-southeast-5", "ap-southeast-7", "cn-beijing", "cn-chengdu",
    "cn-hangzhou", "cn-heyuan-acdr-1", "cn-hongkong", "cn-huhehaote", "cn-qingdao", "cn-shanghai",
    "cn-shanghai-cloudspe", "cn-shanghai-finance-1", "cn-shenzhen", "cn-wulanchabu",
    "cn-zhangjiakou", "eu-central-1", "eu-west-1", "me-central-1", "us-east-1", "us-west-1",
}  # fmt: skip
FC3_TRIGGER_TYPES = {
    "cdn_events", "eventbridge", "http", "log", "mns_topic", "oss", "tablestore", "timer",
}  # fmt: skip
FC3_LOG_CONFIG = {
    "enableInstanceMetrics", "enableLlmMetrics", "enableRequestMetrics", "logBeginRule",
    "logstore", "project",
}  # fmt: skip
FC3_ASYNC = {
    "asyncTask",
    "destinationConfig",
    "maxAsyncEventAgeInSeconds",
    "maxAsyncRetryAttempts",
    "qualifier",
}
FC3_TRIGGER = {
    "description",
    "invocationRole",
    "qualifier",
    "sourceArn",
    "triggerConfig",
    "triggerName",
    "triggerType",
}
FC3_TIMER = {"cronExpression", "enable", "payload"}

_S_EXPR = re.compile(r"\$\{([^}]*)\}")
_S_ENV = re.compile(r"""^env\(\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*(?:,\s*'([^']*)'\s*)?\)$""")
_S_VAR = re.compile(r"^vars\.([A-Za-z_][A-Za-z0-9_]*)$")
_S_CONFIG = re.compile(r"""^config\(\s*["']AccountID["']\s*\)$""")


def s_expressions(text: str) -> list[str]:
    return _S_EXPR.findall(text)


def s_resolve(value: Any, variables: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """Serverless Devs magic variables this project uses: ``${vars.X}``, ``${env('X', 'd')}``,
    ``${config('AccountID')}``. Unknown expressions raise ValueError."""
    if isinstance(value, dict):
        return {k: s_resolve(v, variables, env) for k, v in value.items()}
    if isinstance(value, list):
        return [s_resolve(v, variables, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        expr = match[1].strip()
        if m := _S_VAR.match(expr):
            if m[1] not in variables:
                raise ValueError(f"${{{expr}}}: no such var")
            return str(s_resolve(variables[m[1]], variables, env))
        if m := _S_ENV.match(expr):
            got = env.get(m[1], m[2])
            if got is None:
                raise ValueError(f"${{{expr}}}: {m[1]} unset and no default")
            return got
        if _S_CONFIG.match(expr):
            return "1234567890123456"
        raise ValueError(f"${{{expr}}}: not a magic variable this project uses")

    return _S_EXPR.sub(one, value)


# --------------------------------------------------------------------------- cron

_NAMES = {
    4: {
        m: i
        for i, m in enumerate(
            ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
        )
    },
    5: {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])},
}
_FIELDS = [
    ("seconds", 0, 59),
    ("minutes", 0, 59),
    ("hours", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
]


def cron_problems(expr: str) -> list[str]:
    """Why ``expr`` is not a UTC FC timer expression (empty when it is one)."""
    if expr.startswith("CRON_TZ="):
        return ["a time zone prefix: the templates schedule in UTC"]
    if expr.startswith("@every"):
        m = re.fullmatch(r"@every ((\d+)h)?((\d+)m)?", expr)
        ok = m is not None and (m[1] or m[3]) and int(m[2] or 0) * 60 + int(m[4] or 0) > 0
        return [] if ok else [f"bad interval {expr!r}"]
    fields = expr.split()
    if len(fields) != 6:
        return [f"{len(fields)} fields, expected 6 (seconds minutes hours day month weekday)"]
    problems: list[str] = []
    for i, (field, (name, low, high)) in enumerate(zip(fields, _FIELDS, strict=True)):
        names = _NAMES.get(i, {})

        def num(
            text: str, name: str = name, low: int = low, high: int = high, names: Any = names
        ) -> int | None:
            value = names.get(text.upper()) if not text.isdigit() else int(text)
            if value is None or not low <= value <= high:
                problems.append(f"{name}: {text!r} is outside {low}..{high}")
                return None
            return value

        for part in field.split(","):
            if part == "?":
                if i not in (3, 5):
                    problems.append(f"{name}: '?' only in day of month or day of week")
                continue
            base, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) < 1):
                problems.append(f"{name}: bad step {step!r}")
            if base == "*":
                continue
            lo, dash, hi = base.partition("-")
            a = num(lo)
            b = num(hi) if dash else a
            if a is not None and b is not None and a > b:
                problems.append(f"{name}: range {base!r} runs backwards")
    return problems
