"""GET /v1/methods: the method table as clients see it, without an API key."""

from __future__ import annotations

from svc_helpers import assert_problem

from recon.methods import DEFAULT_METHOD, get_method, method_names


def test_methods_are_the_table_and_need_no_key(make_server):
    server = make_server(auth_enabled=True)
    res = server.client.get("/v1/methods")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["default"] == DEFAULT_METHOD and body["default_preset"] == "balanced"
    assert [m["name"] for m in body["methods"]] == method_names()
    by_name = {m["name"]: m for m in body["methods"]}
    neus, poisson, udf = by_name["neus"], by_name["poisson"], by_name["udf"]
    assert neus["input_kind"] == "images" and neus["extractors"] == ["marching_cubes"]
    assert neus["label"] == "From photos" and neus["description"] == get_method("neus").description
    assert poisson["field_kind"] == "none" and poisson["extractors"] == [] and poisson["default_extractor"] is None
    assert [p["resolution"] for p in poisson["presets"]] == [None, None, None]
    assert udf["default_extractor"] == "dualmesh_udf"
    assert [(p["name"], p["resolution"]) for p in udf["presets"]] == [("fast", 128), ("balanced", 128),
                                                                     ("quality", 256)]
    assert_problem(server.client.get("/v1/jobs"), 401, "unauthorized")  # the rest of /v1 still needs a key
