"""A bounded schema-based fuzz run against a real member, inside `make test` (issue 17,
item 8): schemathesis generates valid and invalid requests for every operation of
`/api/v1/openapi.json` and checks each answer -- no 5xx, only documented statuses and
content types, bodies that match their schemas, invalid input refused. `make fuzz` runs
the same thing with more examples."""

from __future__ import annotations

from pathlib import Path

from shoal.testing import ServerProcess
from tests.fuzz.run import fuzz


def test_the_api_answers_as_its_schema_says(tmp_path: Path) -> None:
    assert fuzz(max_examples=10, seed=17, workdir=tmp_path) == 0


def test_the_schema_documents_the_real_statuses(server: ServerProcess) -> None:
    schema = server.get("/api/v1/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert "422" not in statuses, (method, path)
            assert {"200", "400", "413", "503"} <= statuses, (method, path)
            ok = operation["responses"]["200"]["content"]
            assert set(ok) <= {"application/json", "text/event-stream", "text/plain"}
    put = schema["paths"]["/api/v1/kv/{key}"]["put"]["responses"]
    assert put["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PutAnswer")
    assert put["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    watch = schema["paths"]["/api/v1/watch"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in watch
    assert "text/plain" in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
