"""STAR and HDF5 metadata I/O, and the files written by a simulation."""
import numpy as np
import pytest
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.errors import InputFileError, OutputExistsError
from cryoxplain.io.hdf5 import read_h5, write_h5
from cryoxplain.io.mrc import read_mrc, validate
from cryoxplain.io.star import StarTable, read_star, write_star
from cryoxplain.sim import euler_to_matrix, phantom, simulate_particles, write_simulation


def test_star_reads_real_relion_file_like_starfile(shared_data, tmp_path):
    starfile = pytest.importorskip("starfile")
    path = shared_data / "aspire_sample_relion_data.star"
    blocks = read_star(path)
    t = blocks["model_class_1"]
    assert isinstance(t, StarTable) and t.n_rows == 17 and len(t) == 29
    ref = starfile.read(path)
    for col in ref.columns:
        if ref[col].dtype.kind in "if":
            assert np.allclose(t[col], ref[col].to_numpy()), col
        else:
            assert list(t[col]) == list(ref[col]), col
    assert t["rlnImageName"][0] == "000001@sample.mrcs" and t["rlnRandomSubset"].dtype == np.int64
    # round trip: write, read back, identical columns
    out = write_star(tmp_path / "rt.star", blocks)
    back = read_star(out)
    assert list(back) == list(blocks)
    for k in t:
        assert back["model_class_1"][k].dtype == t[k].dtype
        assert np.array_equal(back["model_class_1"][k], t[k]), k
    # and starfile reads what we wrote
    again = starfile.read(out)
    assert np.allclose(again["rlnAngleTilt"].to_numpy(), t["rlnAngleTilt"])


def test_star_pairs_quotes_and_errors(tmp_path):
    blocks = {"general": {"rlnImageSize": 64, "rlnComment": "two words", "rlnPixel": 1.25},
              "particles": StarTable(rlnImageName=np.array(["1@a b.mrcs", "2@c.mrcs"]), rlnAngleRot=np.array([0.1, -3.5]))}
    p = write_star(tmp_path / "x.star", blocks)
    back = read_star(p)
    assert back["general"] == {"rlnImageSize": 64, "rlnComment": "two words", "rlnPixel": 1.25}
    assert list(back["particles"]["rlnImageName"]) == ["1@a b.mrcs", "2@c.mrcs"]
    with pytest.raises(OutputExistsError):
        write_star(p, blocks)
    bad = tmp_path / "bad.star"
    bad.write_text("data_\nloop_\n_rlnA\n_rlnB\n1 2\n3\n")
    with pytest.raises(InputFileError, match="row 2 has 1 values"):
        read_star(bad)
    bad.write_text("hello\n")
    with pytest.raises(InputFileError, match="not a STAR file"):
        read_star(bad)


def test_hdf5_round_trip(tmp_path):
    d = {"a": np.arange(5.0), "g/b": np.ones((2, 3), np.float32), "names": np.array(["x", "yy"])}
    meta = {"seed": 3, "snr": 0.25, "nested": {"k": [1, 2]}, "none": None}
    p = write_h5(tmp_path / "r.h5", d, meta)
    data, attrs = read_h5(p)
    assert attrs == meta
    assert np.array_equal(data["a"], d["a"]) and np.array_equal(data["g/b"], d["g/b"])
    assert list(data["names"]) == ["x", "yy"]
    with pytest.raises(OutputExistsError):
        write_h5(p, d, meta)
    (tmp_path / "junk.h5").write_text("nope")
    with pytest.raises(InputFileError, match="HDF5"):
        read_h5(tmp_path / "junk.h5")


def test_write_simulation_files_metadata_and_regeneration(tmp_path):
    dens = phantom(size=24, pixel_size=3.0, seed=2)
    res = simulate_particles(dens, 5, snr=0.5, seed=9, paired=True)
    paths = write_simulation(res, tmp_path / "sim")
    assert {p.name for p in paths.values()} == {"sim_clean.mrcs", "sim_noisy.mrcs", "sim_noisy2.mrcs", "sim.star", "sim.h5"}
    for key in ("clean", "noisy", "noisy2"):
        data, vs = read_mrc(paths[key])
        assert validate(paths[key]) and vs == pytest.approx(3.0) and np.array_equal(data, getattr(res, key))
    star = read_star(paths["star"])
    parts = star["particles"]
    assert star["optics"]["rlnImagePixelSize"][0] == 3.0 and star["simulation"]["cryoxplainSeed"] == 9
    assert parts["rlnImageName"][4] == "000005@sim_noisy.mrcs"
    rots = euler_to_matrix(*np.radians([parts["rlnAngleRot"], parts["rlnAngleTilt"], parts["rlnAnglePsi"]]))
    assert np.allclose(rots, res.metadata["rotation"], atol=1e-9)
    data, attrs = read_h5(paths["h5"])
    assert attrs["seed"] == 9 and attrs["snr"] == 0.5 and attrs["pixel_size"] == 3.0
    assert np.array_equal(data["particles/euler"], res.metadata["euler"])
    # regenerate exactly from the recorded parameters
    again = simulate_particles(phantom(size=attrs["density_box"], pixel_size=attrs["pixel_size"], seed=2), attrs["n"],
                               snr=attrs["snr"], seed=attrs["seed"], paired=attrs["paired"])
    assert np.array_equal(again.noisy2, read_mrc(paths["noisy2"])[0])
    # all or nothing: one existing output blocks the whole set
    (tmp_path / "other.h5").write_text("x")
    with pytest.raises(OutputExistsError):
        write_simulation(res, tmp_path / "other")
    assert not any(p.name.startswith("other_") for p in tmp_path.iterdir())


def test_cli_simulate_phantom_and_map(tmp_path, shared_data):
    r = CliRunner().invoke(cli, ["simulate", "--phantom", "-n", "4", "--box", "24", "--snr", "1/64", "--seed", "3",
                                 "-o", str(tmp_path / "ph")])
    assert r.exit_code == 0, r.output
    assert "measured SNR" in r.output
    clean, vs = read_mrc(tmp_path / "ph_clean.mrcs")
    assert clean.shape == (4, 24, 24) and vs == 1.0
    r2 = CliRunner().invoke(cli, ["simulate", "--phantom", "-n", "4", "--box", "24", "-o", str(tmp_path / "ph")])
    assert r2.exit_code == 2 and "--force" in r2.output
    r3 = CliRunner().invoke(cli, ["simulate", "--phantom", "-n", "4", "--box", "24", "--snr", "1/64", "--seed", "3",
                                  "-o", str(tmp_path / "ph"), "--force"])
    assert r3.exit_code == 0 and np.array_equal(read_mrc(tmp_path / "ph_clean.mrcs")[0], clean)
    ribo = shared_data / "aspire_clean70SRibosome_vol_65p.mrc"
    r4 = CliRunner().invoke(cli, ["simulate", str(ribo), "-n", "2", "-o", str(tmp_path / "ribo")])
    assert r4.exit_code == 2 and "--pixel-size" in r4.output
    assert not list(tmp_path.glob("ribo*"))
    r5 = CliRunner().invoke(cli, ["simulate", str(ribo), "--pixel-size", "5", "-n", "2", "--box", "48", "--ctf",
                                  "-o", str(tmp_path / "ribo")])
    assert r5.exit_code == 0, r5.output
    assert read_mrc(tmp_path / "ribo_clean_noctf.mrcs")[0].shape == (2, 48, 48)
    r6 = CliRunner().invoke(cli, ["simulate", "-n", "2", "-o", str(tmp_path / "x")])
    assert r6.exit_code == 2 and "--phantom" in r6.output


@pytest.mark.parametrize("scale", ["image", "stack"])
def test_streaming_equals_in_memory(tmp_path, scale):
    from cryoxplain.sim import CTFParams, simulate_to_files

    dens = phantom(size=20, pixel_size=3.0, seed=4)
    kw = dict(snr=0.3, seed=5, paired=True, ctf=CTFParams(defocus_min=5000, defocus_max=9000), noise_scale=scale)
    ref = simulate_particles(dens, 7, **kw)
    write_simulation(ref, tmp_path / "mem")
    paths, meta, params = simulate_to_files(dens, 7, tmp_path / "stream", chunk=3, **kw)
    for key in ("clean", "noisy", "noisy2", "projection"):
        assert np.array_equal(read_mrc(paths[key])[0], getattr(ref, key)), key
    assert np.array_equal(meta["euler"], ref.metadata["euler"])
    assert (tmp_path / "mem.star").read_text().replace("@mem_", "@stream_") == paths["star"].read_text()
    d1, a1 = read_h5(tmp_path / "mem.h5")
    d2, a2 = read_h5(paths["h5"])
    assert a1 == {**a2, "files": a1["files"]} and all(np.array_equal(d1[k], d2[k]) for k in d1)


def test_failed_write_leaves_nothing(tmp_path):
    from cryoxplain.errors import ParameterError

    res = simulate_particles(phantom(size=16, pixel_size=2.0), 3, seed=1, paired=True)
    res.noisy2[1, 2, 3] = np.nan  # fails after clean and noisy were written to temporaries
    with pytest.raises(ParameterError, match="NaN"):
        write_simulation(res, tmp_path / "sim")
    assert list(tmp_path.iterdir()) == []  # no outputs, no hidden temporaries
