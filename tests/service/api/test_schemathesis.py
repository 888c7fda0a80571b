"""Property-based fuzzing of the live server from its own OpenAPI document, with every schemathesis check:
no 5xx and no conformance failure (undocumented status or header, a schema-valid request refused, a
schema-invalid one accepted, security declared but not enforced...) in at least 1000 cases.

The refusals of a schema-valid request allowed are for what the schema cannot say (or says only at great
length), each answered with a problem type of its own: bytes that are base64 but no image (`invalid-image`),
an embedding of another dimension than the task's model (`invalid-embedding`), a metadata or filter integer
past 64 bits (`invalid-metadata`: a bound on every integer at any depth of a free-form object). The one
acceptance of a "schema-violating" request allowed is a form field of the wrong JSON type in a multipart body:
every form field is text on the wire, so an `id` negated into an array arrives as the string it was
serialised to, and is a valid id.

Schemathesis generates requests for every operation: valid ones (positive mode) and ones that break the
schema (negative mode), with the task either free (mostly unknown tasks: 404s) or pinned to `face` so bodies
reach the real decoding, embedding and index code. Bounded: a fixed number of examples per operation and
mode, derandomized, so the run is reproducible and takes well under a minute here.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup

from .conftest import LiveServer, start_server

EXAMPLES = 40  # per operation and variant; about 1400 cases in all
MIN_CASES = 1000
SEMANTIC = {"urn:ufo:problem:invalid-image", "urn:ufo:problem:invalid-embedding", "urn:ufo:problem:invalid-metadata"}
VARIANTS = [  # (mode, pinned path parameters)
    (schemathesis.GenerationMode.POSITIVE, {"task": "face"}),
    (schemathesis.GenerationMode.POSITIVE, {}),
    (schemathesis.GenerationMode.NEGATIVE, {"task": "face"}),
]


@pytest.fixture(scope="module")
def fuzz_server(api_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(api_repo, tmp_path_factory.mktemp("fuzz"), limits__request_timeout_s="20")
    yield server
    server.stop()


def run_operation(operation, base_url: str, mode, pinned: dict, seen: Counter, statuses: Counter,
                  failures: list[str], http: requests.Session) -> None:
    path_params = {k: v for k, v in pinned.items() if "{" + k + "}" in operation.path}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_params or None))
    def check(case) -> None:
        response = case.call(base_url=base_url, session=http, timeout=60)
        seen[operation.label] += 1
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{response.status_code} {operation.label}: {response.text[:300]}\n"
                            f"{case.as_curl_command()}")
        try:
            case.validate_response(response, transport_kwargs={"base_url": base_url, "session": http})
        except FailureGroup as group:
            if not semantic_refusal(group, response) and not untyped_form_field(group, case):
                failures.append(f"{operation.label}: {group}"[:3000])

    with contextlib.suppress(Unsatisfiable):  # e.g. no negative variant of an operation without inputs
        check()


def semantic_refusal(group: FailureGroup, response: requests.Response) -> bool:
    """A schema-valid request refused only for what the schema cannot express (see the module docstring)."""
    if any(type(f).__name__ != "RejectedPositiveData" for f in group.exceptions) or response.status_code != 422:
        return False
    return response.json().get("type") in SEMANTIC


def untyped_form_field(group: FailureGroup, case) -> bool:
    """A multipart request "violating" only a field's JSON type, which a form cannot carry (module docstring)."""
    return case.media_type == "multipart/form-data" and all(
        type(f).__name__ == "AcceptedNegativeData" and "violates `type`" in f.message for f in group.exceptions)


def test_no_server_errors_or_conformance_failures_in_generated_requests(fuzz_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    seen: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    with requests.Session() as http:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode, pinned in VARIANTS:
                run_operation(operation, fuzz_server.url, mode, pinned, seen, statuses, failures, http)
    total = sum(seen.values())
    print(f"\nschemathesis: {total} cases over {len(seen)} operations; statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(failures[:5])
    assert total >= MIN_CASES, dict(seen)
    assert "unhandled error" not in fuzz_server.logs()
    assert requests.get(f"{fuzz_server.url}/readyz", timeout=10).status_code == 200
