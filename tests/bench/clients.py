"""CPU per GET by HTTP client, serial and under the fan-out: the numbers behind README's (d).

    .venv/bin/python -m tests.bench.clients [--threads 150] [--latency 0.1] [--rounds 3]

Each round sends ``--threads`` GETs of a Prometheus instant query to the emulator (every answer
held back ``--latency`` seconds, as a far server would), one per thread, and parses the JSON
answer; the serial rounds send 20 in a row from one thread. Every thread keeps its own client
and keep-alive connection, so no client is shared and no pool is contended (the best case of
:class:`edgescaler.cloud.acs.ClientShards`). Prints the wall time of each round and the process
CPU per GET, in a CPython 3.10 running the unpacked function package (``tests.bench.perf``'s
build, ``build/bench/code``; built first when missing).

The clients:

- ``httpx``: what the CS, KMS and OSS clients use (a shared SSL context, as ``acs.client``);
- ``requests``: what prometheus-api-client sends its queries with;
- ``httpx over http.client`` and ``requests over http.client``: the same libraries with their
  transport (httpcore and h11; urllib3) swapped for the standard library's, through their own
  extension points (``httpx.BaseTransport``, a requests adapter). Measurement prototypes only:
  plain HTTP, no proxies, no gzip, no retries;
- ``http.client``: the standard library alone, the floor for a blocking client in a thread.

Numbers, not asserts. One run of 50-200 ms answers on this 2-core machine is noisy: compare
clients within one invocation.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tests.bench import perf

CHILD = """
import http.client, json, resource, ssl, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlsplit
sys.path.insert(0, sys.argv[1])
import httpx, requests
from requests.adapters import BaseAdapter
from requests.models import Response
from requests.structures import CaseInsensitiveDict

url, threads, rounds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
queries = sys.argv[5:]
SERIAL_GETS = 20  # one thread: 20 answers in a row a round
local = threading.local()
context = ssl.create_default_context()  # one per process, as edgescaler.cloud.tls


def connection(netloc):
    conns = local.__dict__.setdefault("conns", {})
    if netloc not in conns:
        conns[netloc] = http.client.HTTPConnection(netloc, timeout=5)
    return conns[netloc]


class Stream(httpx.SyncByteStream):
    def __init__(self, answer):
        self.answer = answer

    def __iter__(self):
        while chunk := self.answer.read1(65536):
            yield chunk
        self.answer.read()  # marks the answer done: the connection can carry the next


class StdlibTransport(httpx.BaseTransport):
    def handle_request(self, request):
        conn = connection(request.url.netloc.decode())
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers.raw}
        conn.request(request.method, request.url.raw_path.decode("ascii"), headers=headers)
        answer = conn.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), stream=Stream(answer))


class StdlibAdapter(BaseAdapter):
    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        parts = urlsplit(request.url)
        conn = connection(parts.netloc)
        headers = {**request.headers, "Accept-Encoding": "identity"}
        conn.request(request.method, f"{parts.path}?{parts.query}", headers=headers)
        answer = conn.getresponse()
        response = Response()
        response.status_code, response.reason = answer.status, answer.reason
        response.headers = CaseInsensitiveDict(answer.getheaders())
        response._content = answer.read()
        response.url, response.request, response.encoding = request.url, request, "utf-8"
        return response

    def close(self):
        pass


def per_thread(build):
    def get(query):
        client = local.__dict__.get(build)
        if client is None:
            client = local.__dict__[build] = build()
        return client.get(url + "/api/v1/query", params={"query": query}).json()
    return get


def mounted(adapter):
    session = requests.Session()
    session.mount("http://", adapter)
    return session


def stdlib(query):
    conn = connection(urlsplit(url).netloc)
    conn.request("GET", "/api/v1/query?" + urlencode({"query": query}),
                 headers={"accept": "application/json"})
    return json.loads(conn.getresponse().read())


clients = {
    "httpx": per_thread(lambda: httpx.Client(verify=context)),
    "requests": per_thread(requests.Session),
    "httpx over http.client": per_thread(lambda: httpx.Client(transport=StdlibTransport())),
    "requests over http.client": per_thread(lambda: mounted(StdlibAdapter())),
    "http.client": stdlib,
}
for name, get in clients.items():
    def one(i):
        assert get(queries[i % len(queries)])["status"] == "success"

    for workers in (1, threads):
        gets = threads if workers > 1 else SERIAL_GETS
        with ThreadPoolExecutor(workers) as pool:
            for _ in range(2):  # threads started, clients built, connections opened
                list(pool.map(one, range(gets)))
            rows = []
            for _ in range(rounds):
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                list(pool.map(one, range(gets)))
                r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
                cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
                rows.append(f"{wall * 1e3:.0f} ms wall, {cpu / gets * 1e3:.2f} ms CPU/GET")
        print(f"{name:26} {workers:>4} thread(s): " + "; ".join(rows), flush=True)
"""


def main(argv: Sequence[str] | None = None) -> int:
    return perf.get_bench(
        CHILD,
        __doc__,
        "{threads} GETs a round, {latency_ms:g} ms per answer, Python 3.10 from the package",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
