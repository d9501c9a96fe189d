"""The dependencies of one run, built from :class:`~edgescaler.settings.Settings`, the environment
and FC's context — shared by the FC handler and the CLI, so both build them the same way.

This (with :mod:`edgescaler.settings`) is where the environment is read: the store, the clients
and the actuator get what they need passed in (credentials, endpoints, a ``password_for``
callable) and read nothing themselves. Everything built here lives for one run and is closed by
:meth:`Runtime.close`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from edgescaler.actuator import Actuator, DryRunActuator, ScaleOutActuator
from edgescaler.cloud import credentials as creds_mod
from edgescaler.cloud.model import CloudAPI
from edgescaler.deadline import Deadline
from edgescaler.errors import ConfigError, SecretError
from edgescaler.metrics.base import MetricSource
from edgescaler.passwords import Passwords
from edgescaler.policy import Policy
from edgescaler.settings import Settings
from edgescaler.store import Store, open_store


class Runtime:
    """Builds each dependency on first use and closes all of them at the end of the run.

    One CS client per region and one Prometheus source per (URL, timeout), built once under a
    lock: the policies of a run are evaluated concurrently and share them.
    """

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        context: Any,
        clock: Callable[[], datetime],
        deadline: Deadline | None = None,
    ) -> None:
        self.settings = settings
        self.deadline = deadline or Deadline.never()
        self._env = env
        self._context = context
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, CloudAPI] = {}
        self._sources: dict[tuple[str, float], MetricSource] = {}
        self._kms: dict[str, Any] = {}
        self.store: Store | None = None
        self.passwords = Passwords(env, kms_for=self.kms_for)

    def password_known(self, policy: Policy) -> bool:
        """Resolve ``policy``'s login password (the KMS cache serves a warm instance) so that
        redaction knows it; False when it cannot be resolved now."""
        try:
            self.passwords.get(policy)
        except SecretError:
            return False
        return True

    def credentials(self) -> creds_mod.Credentials:
        """FC's ``context.credentials`` first, then ``ALIBABA_CLOUD_*`` (a ConfigError names the
        variable when they are missing or malformed)."""
        return creds_mod.resolve(self._context, self._env)

    def open_store(self) -> Store:
        if self.store is None:
            # Inside FC, the function role's per-invocation STS credentials. The OSS store signs
            # every request and reads no environment: it also gets the ALIBABA_CLOUD_* fallback.
            store_creds = creds_mod.from_fc_context(self._context) if self._context else None
            if self.settings.store.startswith("oss://"):
                store_creds = self.credentials()
            self.store = open_store(
                self.settings.store,
                s3_endpoint=self.settings.s3_endpoint,
                credentials=store_creds,
                oss_endpoint=self.settings.oss_endpoint,
                oss_region=self.settings.oss_region,
                env=self._env,
            )
        return self.store

    def cloud_for(self, region: str) -> CloudAPI:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                from edgescaler.cloud.cs import CSClient

                credentials = self.credentials()
                client = CSClient(
                    region,
                    lambda: credentials,
                    endpoint=self.settings.cs_endpoint,
                    connect_timeout=self.settings.cs_connect_timeout,
                    read_timeout=self.settings.cs_read_timeout,
                    clock=self._clock,
                    deadline=self.deadline,
                )
                self._clients[region] = client
        return client

    def metrics_for(self, policy: Policy) -> MetricSource:
        from edgescaler.metrics.prometheus import PrometheusSource

        url = policy.prometheus.url if policy.prometheus else self.settings.prometheus_url
        if not url:
            raise ConfigError(
                f"{policy.name}: no Prometheus URL: set prometheus.url in the policy or "
                "EDGESCALER_PROMETHEUS_URL"
            )
        timeout = (
            policy.prometheus.timeout.total_seconds()
            if policy.prometheus
            else self.settings.prometheus_timeout
        )
        with self._lock:
            source = self._sources.get((url, timeout))
            if source is None:
                source = PrometheusSource(url, timeout=timeout, deadline=self.deadline)
                self._sources[(url, timeout)] = source
        return source

    def kms_for(self, region: str) -> Any:
        """The run's KMS client for ``region`` (only built when a policy names a KMS secret)."""
        with self._lock:
            client = self._kms.get(region)
            if client is None:
                from edgescaler.cloud.kms import KMSClient

                credentials = self.credentials()
                client = KMSClient(region, lambda: credentials, endpoint=self.settings.kms_endpoint)
                self._kms[region] = client
        return client

    def actuator(self, dry_run: bool) -> Actuator:
        if dry_run:
            return DryRunActuator()
        return ScaleOutActuator(
            self.open_store(),
            self.cloud_for,
            self.passwords,
            deadline=self.deadline,
            scale_out_seconds=self.settings.scale_out_seconds,
            clock=self._clock,
        )

    def close(self) -> None:
        closers: list[Any] = [
            *self._clients.values(),
            *self._sources.values(),
            *self._kms.values(),
        ]
        self._clients.clear()
        self._sources.clear()
        self._kms.clear()
        for c in closers:
            with contextlib.suppress(Exception):  # best effort at the end of an invocation
                c.close()
        if self.store is not None:
            with contextlib.suppress(Exception):  # a close must not hide what the run did
                self.store.close()
            self.store = None
