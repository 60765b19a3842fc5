import numpy as np
import pytest

from dlbasics.studies import registry
from dlbasics.studies.spec import Setting, Study, canonical_json, config_hash, grid


def _setting(**kw):
    base = dict(problem="xor", model={"hidden": [4]}, hyper={"lr": 0.1}, epochs=3)
    base.update(kw)
    return Setting(**base)


def test_canonical_json_is_order_free_and_plain():
    a = {"b": (1, 2), "a": np.float64(0.5), "c": {"y": np.int64(3), "x": None}}
    b = {"c": {"x": None, "y": 3}, "a": 0.5, "b": [1, 2]}
    assert canonical_json(a) == canonical_json(b) == '{"a":0.5,"b":[1,2],"c":{"x":null,"y":3}}'
    assert config_hash(a) == config_hash(b)
    with pytest.raises(ValueError, match="non-finite"):
        canonical_json({"lr": float("nan")})
    with pytest.raises(TypeError, match="plain JSON"):
        canonical_json({"f": object()})


def test_hash_covers_results_not_labels():
    s = _setting(factors={"lr": 0.1})
    assert s.label == "lr=0.1"
    assert s.config_hash() == _setting(label="other").config_hash()
    assert s.config_hash() != _setting(hyper={"lr": 0.2}).config_hash()
    assert s.config_hash() != _setting(batch_size=8).config_hash()
    assert s.config_hash("cpu") != s.config_hash("numpy")
    assert len(s.config_hash()) == 64


def test_grid_is_the_cartesian_product_in_order():
    g = list(grid(method=["a", "b"], lr=[1, 2, 3]))
    assert len(g) == 6
    assert g[0] == {"method": "a", "lr": 1} and g[1] == {"method": "a", "lr": 2}
    assert g[-1] == {"method": "b", "lr": 3}


@pytest.mark.parametrize("kw, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(epochs=-1), "epochs"),
    (dict(metrics="some"), "metrics"),
    (dict(model={"hidden": [4], "seed": 1}), "seed"),
    (dict(model={"activation": "tanh"}), "sizes"),
    (dict(schedule={"name": "nope"}), "schedule"),
])
def test_setting_rejects_bad_fields(kw, match):
    with pytest.raises(ValueError, match=match):
        _setting(**kw)


def test_study_checks_and_runs():
    s1, s2 = _setting(factors={"lr": 0.1}), _setting(hyper={"lr": 0.2}, factors={"lr": 0.2})
    st = Study("demo", "t", "q", [s1, s2], seeds=[0, 1, 2])
    runs = st.runs()
    assert len(runs) == 6 and runs[0].key == ("demo", s1.config_hash(), 0)
    assert st.with_seeds(2).seeds == [0, 1] and st.with_seeds(5).seeds == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="duplicate"):
        Study("demo", "t", "q", [s1, _setting(hyper={"lr": 0.3}, label=s1.label)], [0])
    with pytest.raises(ValueError, match="same configuration"):
        Study("demo", "t", "q", [s1, _setting(label="x")], [0])
    with pytest.raises(ValueError, match="seeds"):
        Study("demo", "t", "q", [s1], [1, 1])
    with pytest.raises(ValueError, match="name"):
        Study("bad name", "t", "q", [s1], [0])
    bad = Study("demo", "t", "q", [_setting(optimizer="nope")], [0])
    with pytest.raises(ValueError, match="unknown optimizer"):
        bad.validate()
    bad = Study("demo", "t", "q", [_setting(problem="nope")], [0])
    with pytest.raises(ValueError, match="unknown problem"):
        bad.validate()


def test_registry_knows_the_example_and_both_profiles():
    assert "gd_demo" in registry.names()
    quick, full = registry.get("gd_demo", "quick"), registry.get("gd_demo", "full")
    assert quick.profile == "quick" and full.profile == "full"
    assert len(quick.runs()) < len(full.runs())
    quick.validate()
    with pytest.raises(registry.UnknownStudy, match="unknown study 'nope'"):
        registry.get("nope")
    assert registry.resolve(["all"]) == registry.names()
