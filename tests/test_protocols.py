"""Protocol files: the shipped presets load and expand, validation names file/key/expectation,
and the paper presets' units map to the kernels' units as documented."""

from __future__ import annotations

import re

import pytest
import torch

from robustbench_mm.corruptions import Condition, apply_condition, get_corruption
from robustbench_mm.datasets.batch import Batch, ModalitySpec
from robustbench_mm.errors import InputError
from robustbench_mm.protocols import list_protocols, load_protocol, parse_protocol

MFEAT_LIKE = {
    "pix": ModalitySpec("pix", "image", (1, 16, 15), value_range=(0.0, 6.0)),
    "fou": ModalitySpec("fou", "vector", (76,)),
    "fac": ModalitySpec("fac", "vector", (216,)),
}
ALL_KINDS = {
    "rgb": ModalitySpec("rgb", "image", (3, 8, 8), value_range=(0.0, 1.0)),
    "seq": ModalitySpec("seq", "sequence", (10, 4)),
    "wav": ModalitySpec("wav", "audio", (256,), value_range=(-1.0, 1.0)),
    "txt": ModalitySpec("txt", "tokens", (12,), vocab_size=50),
    "vec": ModalitySpec("vec", "vector", (5,)),
}

BASE = """
name = "t"
description = "test"
seed = 3
"""


def test_shipped_protocols_are_listed_and_expand_clean_first():
    names = list_protocols()
    assert {"quick", "standard", "missing", "noise-sweep", "conflict", "qmf", "qmf-salt", "udml", "udml-salt"} <= set(names)
    for name in names:
        protocol = load_protocol(name).with_spectrogram("natural-log")  # udml's audio part asks for the statement
        assert protocol.name == name
        for specs in (MFEAT_LIKE, ALL_KINDS):
            conditions = protocol.expand(specs)
            assert conditions[0].family == "clean"
            assert len({c.key for c in conditions}) == len(conditions)


def test_quick_on_mfeat_counts_cells_by_kind():
    # gaussian_noise fits image+vector (3 modalities), gaussian_blur and occlusion the image,
    # feature_dropout the two vectors; 3 levels each; + 3 leave-one-out removals + clean
    expected = 1 + 3 * (3 + 1 + 1 + 2) + 3
    conditions, notes = load_protocol("quick").expand_with_notes(MFEAT_LIKE)
    assert len(conditions) == expected
    assert any("blank" in n and "tokens" in n for n in notes)


def test_standard_covers_every_catalog_entry_and_every_subset():
    conditions = load_protocol("standard").expand(ALL_KINDS)
    names = {c.name for c in conditions if c.family == "corruption"}
    from robustbench_mm.corruptions import list_corruptions

    assert names == {s.name for s in list_corruptions() if s.catalog and any(s.supports(m) is None for m in ALL_KINDS.values())}
    removals = [c for c in conditions if c.family == "removal"]
    assert len(removals) == (2**5 - 2) * 2  # every non-empty proper subset x (zero, mean)


def test_missing_protocol_grid():
    conditions = load_protocol("missing").expand(MFEAT_LIKE)
    assert len(conditions) == 1 + (2**3 - 2) * 4 * 6


def test_qmf_is_one_joint_condition_per_level_in_kernel_units():
    qmf = load_protocol("qmf")
    assert qmf.seeds == (0, 1, 2, 3, 4)
    conditions = qmf.expand(ALL_KINDS)[1:]
    assert [(c.level, c.rate, c.modalities, c.masks) for c in conditions] == [
        (5.0, 0.5, ("rgb", "txt"), "independent"), (10.0, 0.5, ("rgb", "txt"), "independent")
    ]
    for c, sigma, blank in zip(conditions, (50, 100), (0.5, 1.0)):
        image, words = c.parts
        # [0, 1] floats are mapped to raw [0, 255] pixels, where the kernel's unit is sigma / 255
        assert (image.corruption, image.param, image.pixel_max, image.to_raw) == ("gaussian_noise", sigma / 255, 255.0, (("rgb", (255.0,), (0.0,)),))
        assert dict(image.options) == {"channels": "shared", "overflow": "wrap", "pattern": "numpy-seed-0"}
        assert (words.corruption, words.param, words.modalities) == ("blank", blank, ("txt",))
    rgbd = load_protocol("qmf-rgbd").expand({"rgb": ALL_KINDS["rgb"], "depth": ModalitySpec("depth", "image", (3, 8, 8), value_range=(0.0, 1.0))})
    assert rgbd[1].parts[0].param == pytest.approx(5 / 255) and rgbd[1].parts[0].shared_noise
    assert rgbd[1].parts[0].modalities == ("rgb", "depth")


def test_udml_sigma_is_ten_times_the_strength_on_the_0_255_scale():
    """An independent check of the unit: a grey image on [0, 255] gets noise of std 10 x strength
    (udml:clipped, whose field is drawn per sample), on the samples its 50% gate selects."""
    spec = ModalitySpec("img", "image", (1, 64, 64), value_range=(0.0, 255.0))
    specs = {"img": spec, "v": ModalitySpec("v", "vector", (3,))}
    conditions = load_protocol("udml:clipped").expand(specs)
    assert [c.level for c in conditions[1:]] == [5.0, 10.0]
    x = torch.full((40, 1, 64, 64), 128.0)
    batch = Batch(inputs={"img": x, "v": torch.zeros(40, 3)}, labels=torch.zeros(40, dtype=torch.int64), ids=torch.arange(40))
    y = apply_condition(batch, conditions[1], specs, seed=0).inputs["img"]
    hit = (y != x).flatten(1).any(1)
    assert 10 <= int(hit.sum()) <= 30
    assert (y - x)[hit].std().item() == pytest.approx(50.0, rel=0.03)


def test_noise_sweep_intensity_ten_matches_catalog_level_five():
    conditions = load_protocol("noise-sweep").expand(ALL_KINDS)
    top = {c.modalities[0]: c.param for c in conditions if c.level == 10}
    table = get_corruption("gaussian_noise").tables
    assert top["vec"] == pytest.approx(table["vector"][4])
    assert top["rgb"] == pytest.approx(table["image"][4], abs=0.02)
    assert top["txt"] == pytest.approx(1.0)


def test_hash_ignores_formatting_but_not_content():
    text = BASE + '[[conflict]]\ntargets = "each"\nrates = [0.5]\n'
    a = parse_protocol(text)
    b = parse_protocol("# a comment\n" + text.replace("rates = [0.5]", "rates = [ 0.5 ]  # half"))
    c = parse_protocol(text.replace("0.5", "0.25"))
    assert a.hash == b.hash != c.hash


def test_load_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(BASE + '[[removal]]\nsubsets = [["fou"], ["fou", "fac"]]\nfills = ["mask"]\n')
    conditions = load_protocol(path).expand(MFEAT_LIKE)
    assert conditions[1:] == [
        Condition("removal", "mask", ("fou",), group="removal"),
        Condition("removal", "mask", ("fou", "fac"), group="removal"),
    ]


def test_joint_targets_and_kind_selectors():
    p = parse_protocol(BASE + '[[corruption]]\ncorruptions = ["gaussian_noise"]\ntargets = [["fou", "fac"], "kind:image"]\nlevels = [2]\n')
    assert [c.modalities for c in p.expand(MFEAT_LIKE)[1:]] == [("fou", "fac"), ("pix",)]


@pytest.mark.parametrize(
    "body, message",
    [
        ('[[corruption]]\ncorruptions = ["gaussian_nose"]\nlevels = [1]\n', r"t.toml: key 'corruption\[0\].corruptions': unknown corruption 'gaussian_nose'; expected one of: .*gaussian_noise"),
        ('[[corruption]]\ncorruptions = ["gaussian_noise"]\nlevels = [6]\n', r"key 'corruption\[0\].levels': expected a non-empty list of numbers in \[0, 5\], got 6"),
        ('[[corruption]]\ncorruptions = ["gaussian_noise"]\n', r"key 'corruption\[0\]': expected exactly one of 'levels' or 'params'"),
        ('[[removal]]\nfills = ["average"]\n', r"key 'removal\[0\].fills': expected a list of fills from zero, mean, noise, mask"),
        ('[[removal]]\nsubsets = "two"\n', r"key 'removal\[0\].subsets': expected one of all, leave-one-out, keep-one"),
        ('[[conflict]]\nrates = [0]\n', r"key 'conflict\[0\].rates': expected a non-empty list of numbers in \(0, 1\]"),
        ('[[conflict]]\nrate = [0.5]\n', r"key 'conflict\[0\].rate': expected one of group, rates, targets"),
        ("levels = [1]\n", r"key 'levels': expected a known key"),
        ('[[corruption]]\ncorruptions = ["gaussian_noise"]\ntargets = ["kind:video"]\nlevels = [1]\n', r"expected a modality kind after 'kind:'"),
        ("name = \n", r"t.toml: not valid TOML"),
    ],
)
def test_validation_names_file_key_and_expectation(body, message):
    with pytest.raises(InputError, match=message):
        parse_protocol(BASE + body, source="t.toml")


def test_modality_errors_at_expansion():
    named = parse_protocol(BASE + '[[corruption]]\ncorruptions = ["gaussian_blur"]\ntargets = ["fou"]\nlevels = [1]\n', source="t.toml")
    with pytest.raises(InputError, match=r"t.toml: key 'corruption\[0\].targets': corruption 'gaussian_blur' does not apply to modality 'fou' of kind 'vector'"):
        named.expand(MFEAT_LIKE)
    unknown = parse_protocol(BASE + '[[conflict]]\ntargets = ["depth"]\n', source="t.toml")
    with pytest.raises(InputError, match=r"modality 'depth' is not in the data; expected one of: pix, fou, fac"):
        unknown.expand(MFEAT_LIKE)
    everything = parse_protocol(BASE + '[[removal]]\nsubsets = [["pix", "fou", "fac"]]\n', source="t.toml")
    with pytest.raises(InputError, match="removes every modality"):
        everything.expand(MFEAT_LIKE)


def test_unknown_protocol_name_lists_choices():
    with pytest.raises(InputError, match=r"unknown protocol 'quik'; expected a .toml path or one of: .*quick"):
        load_protocol("quik")
    with pytest.raises(InputError, match="does not exist"):
        load_protocol("nowhere/p.toml")


# --------------------------------------------------------------------------- fault cases (issue 11)

PARAMS = BASE + '[[corruption]]\ncorruptions = ["gaussian_noise"]\ntargets = "each"\nparams = [{p}]\n'


@pytest.mark.parametrize("param,why", [("nan", "not NaN"), ("1e40", "keeps a vector input finite"),
                                       ("-inf", "keeps a")])
def test_nan_or_absurd_param_names_file_and_field(param, why):
    with pytest.raises(InputError) as e:
        parse_protocol(PARAMS.format(p=param), source="p.toml")
    msg = str(e.value)
    assert msg.startswith("protocol p.toml: key 'corruption[0].params': expected ") and why in msg and "\n" not in msg


def test_a_sane_param_is_accepted():
    assert parse_protocol(PARAMS.format(p="0.5"), source="p.toml").groups[0]["params"] == [0.5]


def test_unknown_metric_is_refused():
    with pytest.raises(InputError, match=r"protocol m.toml: key 'metrics': expected metric names from accuracy, .*got 'acuracy'"):
        parse_protocol(BASE + 'metrics = ["accuracy", "acuracy"]\n', source="m.toml")


@pytest.mark.parametrize("tables,key", [
    ('[[corruption]]\ncorruptions = ["gaussian_noise"]\nlevels = [1, 3, 1]\n', "corruption[0].levels"),
    ('[[corruption]]\ncorruptions = ["gaussian_noise", "gaussian_noise"]\nlevels = [1]\n', "corruption[0].corruptions"),
    ('[[removal]]\nfills = ["zero", "zero"]\n', "removal[0].fills"),
])
def test_a_repeated_entry_is_refused(tables, key):
    with pytest.raises(InputError, match=rf"protocol d.toml: key '{re.escape(key)}': expected distinct entries"):
        parse_protocol(BASE + tables, source="d.toml")


def test_the_same_condition_from_two_tables_is_refused():
    table = '[[corruption]]\ncorruptions = ["gaussian_noise"]\ntargets = ["fou"]\nlevels = [2]\n'
    protocol = parse_protocol(BASE + table + table.replace('["fou"]', '"each"'), source="twice.toml")
    with pytest.raises(InputError, match=r"protocol twice.toml: key 'corruption\[1\]': condition .*fou.* is already made by corruption\[0\]"):
        protocol.expand(MFEAT_LIKE)


def test_binary_protocol_file_is_one_error(tmp_path, monkeypatch):
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(InputError, match=r"protocol .*bin.toml: not a text file \(byte 0 is not UTF-8\)"):
        load_protocol(str(path))
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "mine.toml").write_bytes(b"\xff\xfe\x00binary")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"protocols/mine.toml: not a text file"):
        load_protocol("mine")


def test_a_condition_table_naming_an_unknown_family_is_one_line_listing_the_families():
    with pytest.raises(InputError) as e:
        parse_protocol(BASE + '[[condition]]\nfamily = "swirl"\n', source="t.toml")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("protocol t.toml: key 'condition[0].family': unknown condition family 'swirl'")
    assert message.endswith("expected one of: clean, conflict, corruption, removal")


def test_a_condition_table_of_a_builtin_family_expands_and_is_checked_by_the_family():
    p = parse_protocol(BASE + '[[condition]]\nfamily = "removal"\nname = "mean"\ntargets = ["fou"]\n')
    assert [c.key for c in p.expand(MFEAT_LIKE)[1:]] == ["removal|mean|fou|l=0|r=1"]
    bad = parse_protocol(BASE + '[[condition]]\nfamily = "removal"\nname = "blank"\ntargets = ["fou"]\n', source="t.toml")
    with pytest.raises(InputError, match=r"protocol t.toml: key 'condition\[0\]': unknown removal fill 'blank'"):
        bad.expand(MFEAT_LIKE)
    with pytest.raises(InputError, match="is in every grid already"):
        parse_protocol(BASE + '[[condition]]\nfamily = "clean"\n')


def test_a_revised_builtin_kernel_enters_the_hash_of_the_protocols_that_can_select_it():
    """reverb's bits changed in issue 23 (revision 2; pink, brown and lowpass for a lone clip): a
    protocol that can select them, by name or through "all", hashes {"revisions": {"reverb": 2, ...}}
    beside its content, so a run begun with revision 1 is refused on resume; a protocol that cannot
    keeps the hash it always had."""
    import hashlib
    import json

    def content_hash(protocol, **extra):
        content = {"name": protocol.name, "seed": protocol.seed, "seeds": list(protocol.seeds),
                   "metrics": list(protocol.metrics), "groups": list(protocol.groups), **extra}
        if protocol.plugins:  # "all" also takes plug-ins an earlier test left registered
            content["plugins"] = [{"name": p["name"], "sha256": p["sha256"]} for p in protocol.plugins]
        return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    audio_revisions = {"brown_noise": 2, "lowpass": 2, "pink_noise": 2, "reverb": 2}
    assert {name: get_corruption(name).revision for name in audio_revisions} == audio_revisions
    for selection, revisions in (('["reverb", "gain"]', {"reverb": 2}), ('"all"', audio_revisions),
                                 ('"kind:audio"', audio_revisions)):
        protocol = parse_protocol(BASE + f"[[corruption]]\ncorruptions = {selection}\nlevels = [1]\n")
        assert protocol.hash == content_hash(protocol, revisions=revisions), selection
    for selection in ('["gain", "white_noise"]', '"kind:image"'):
        protocol = parse_protocol(BASE + f"[[corruption]]\ncorruptions = {selection}\nlevels = [1]\n")
        assert protocol.hash == content_hash(protocol), selection
