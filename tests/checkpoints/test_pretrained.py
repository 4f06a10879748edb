"""The converted-weights directory: save/load round trip, manifest, shape validation against the model,
sharded restore on 8 fake devices, refusal to overwrite."""

import json
import os

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from stylecrafter_jax.checkpoints import pretrained
from stylecrafter_jax.checkpoints.pretrained import (FORMAT, FORMAT_VERSION, MANIFEST, load_pretrained,
                                                     read_manifest, save_pretrained)
from stylecrafter_jax.errors import CheckpointMismatchError


def _components(seed=0):
    rng = np.random.default_rng(seed)
    return {"unet": {"input_blocks_0": {"0": {"kernel": rng.standard_normal((3, 3, 4, 16), np.float32),
                                              "bias": rng.standard_normal((16,), np.float32)}},
                     "time_embed_0": {"kernel": rng.standard_normal((16, 64), np.float32)}},
            "vae": {"quant_conv": {"kernel": rng.standard_normal((1, 1, 8, 8), np.float32)}}}


def _abstract(tree):
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), tree)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Saved with parts of at most 2 kB, so that the unet component spans three orbax checkpoints."""
    directory = str(tmp_path_factory.mktemp("pretrained"))
    components = _components()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretrained, "PART_BYTES", 2048)
        manifest = save_pretrained(directory, components, {"converter_version": "test", "model_config": {"size": "t"}})
    return directory, components, manifest


def test_round_trip_is_exact_and_the_manifest_is_complete(saved):
    directory, components, manifest = saved
    loaded = load_pretrained(directory, ["unet", "vae"], abstract={n: _abstract(t) for n, t in components.items()})
    for name in components:
        assert jax.tree.structure(loaded[name]) == jax.tree.structure(components[name])
        assert jax.tree.all(jax.tree.map(np.array_equal, loaded[name], components[name]))
    on_disk = read_manifest(directory)
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["format"] == FORMAT and on_disk["format_version"] == FORMAT_VERSION
    assert on_disk["converter_version"] == "test" and on_disk["model_config"] == {"size": "t"}
    assert on_disk["components"] == {"unet": {"num_params": 3 * 3 * 4 * 16 + 16 + 16 * 64, "num_leaves": 3, "parts": 3},
                                     "vae": {"num_params": 64, "num_leaves": 1, "parts": 1}}
    assert sorted(os.listdir(os.path.join(directory, "unet"))) == ["part-000", "part-001", "part-002"]
    # without an abstract tree the stored shapes are used
    alone = load_pretrained(directory, ["vae"])["vae"]
    np.testing.assert_array_equal(alone["quant_conv"]["kernel"], components["vae"]["quant_conv"]["kernel"])


def test_another_model_config_is_refused_naming_component_and_leaves(saved):
    directory, components, _ = saved
    other = _abstract(components["unet"])
    other["time_embed_0"]["kernel"] = jax.ShapeDtypeStruct((32, 128), np.float32)
    other["time_embed_0"]["bias"] = jax.ShapeDtypeStruct((128,), np.float32)
    del other["input_blocks_0"]["0"]["bias"]
    with pytest.raises(CheckpointMismatchError) as error:
        load_pretrained(directory, ["unet"], abstract={"unet": other})
    message = str(error.value)
    assert "component 'unet'" in message
    assert "time_embed_0/kernel: stored (16, 64), model (32, 128)" in message
    assert "1 missing" in message and "time_embed_0/bias" in message
    assert "1 unexpected" in message and "input_blocks_0/0/bias" in message


def test_sharded_restore_on_the_fake_devices(saved):
    directory, components, _ = saved
    assert jax.device_count() == 8
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    shardings = jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), components["unet"])
    shardings["time_embed_0"]["kernel"] = NamedSharding(mesh, PartitionSpec("data", "model"))
    loaded = load_pretrained(directory, ["unet", "vae"], abstract={"unet": _abstract(components["unet"])},
                             shardings={"unet": shardings, "vae": NamedSharding(mesh, PartitionSpec())})
    kernel = loaded["unet"]["time_embed_0"]["kernel"]
    assert isinstance(kernel, jax.Array) and kernel.sharding == shardings["time_embed_0"]["kernel"]
    assert kernel.addressable_shards[0].data.shape == (4, 32)
    np.testing.assert_array_equal(np.asarray(kernel), components["unet"]["time_embed_0"]["kernel"])
    assert loaded["vae"]["quant_conv"]["kernel"].sharding.is_fully_replicated
    # shardings carried by the abstract tree itself, as a trainer's born-sharded eval_shape gives them
    carried = jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
                           components["unet"], shardings)
    again = load_pretrained(directory, ["unet"], abstract={"unet": carried})["unet"]
    assert again["time_embed_0"]["kernel"].sharding == shardings["time_embed_0"]["kernel"]
    assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), b), again, components["unet"]))


def test_missing_component_overwrite_and_foreign_directories(saved, tmp_path):
    directory, components, _ = saved
    with pytest.raises(CheckpointMismatchError, match="no component 'adapter'"):
        load_pretrained(directory, ["adapter"])
    with pytest.raises(FileExistsError, match=MANIFEST):
        save_pretrained(directory, components, {})
    with pytest.raises(CheckpointMismatchError, match="not a converted-weights directory"):
        read_manifest(str(tmp_path))
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CheckpointMismatchError, match="format"):
        read_manifest(str(tmp_path))


def test_overwrite_replaces_components(tmp_path):
    directory = str(tmp_path / "weights")
    save_pretrained(directory, _components(0), {})
    replacement = _components(1)
    save_pretrained(directory, {"vae": replacement["vae"]}, {"note": "second"}, overwrite=True)
    manifest = read_manifest(directory)
    assert manifest["note"] == "second" and list(manifest["components"]) == ["vae"]
    loaded = load_pretrained(directory, ["vae"])["vae"]
    np.testing.assert_array_equal(loaded["quant_conv"]["kernel"], replacement["vae"]["quant_conv"]["kernel"])
    with pytest.raises(CheckpointMismatchError, match="no component 'unet'"):
        load_pretrained(directory, ["unet"])
