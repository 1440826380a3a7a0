"""Item 3 of issue 18: MRC header statistics are accumulated batch by batch while writing
(no full-size temporary at close) and equal numpy's over the whole stack."""
import mrcfile
import numpy as np
import pytest

from cryoxplain.errors import ShapeError
from cryoxplain.io.mrc import RunningStats, StackWriter, write_mrc


def _header(path):
    with mrcfile.open(path, header_only=True, permissive=True) as m:
        h = m.header
        return float(h.dmin), float(h.dmax), float(h.dmean), float(h.rms)


def _expected(data):
    d = np.asarray(data, np.float64)
    return d.min(), d.max(), d.mean(), d.std()


def _assert_header(path, data):
    got, want = _header(path), _expected(data)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-6, abs=1e-6 * abs(want[3]))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_stack_writer_header_stats_equal_numpy_over_the_whole_stack(tmp_path, dtype):
    rng = np.random.default_rng(1)
    # a large offset against the spread: the naive sum-of-squares formula loses digits here
    data = (1000.0 + 0.5 * rng.standard_normal((53, 16, 12))).astype(np.float32)
    out = tmp_path / "s.mrcs"
    order = [(30, 53), (0, 7), (7, 30)]  # batches of uneven size, out of order
    with StackWriter(out, data.shape, 1.5, dtype=dtype) as w:
        for a, b in order:
            w.write(a, data[a:b])
    stored = mrcfile.read(out).astype(np.float64)
    np.testing.assert_array_equal(stored, data.astype(dtype).astype(np.float64))
    _assert_header(out, stored)


def test_write_mrc_header_stats_equal_numpy(tmp_path):
    data = np.random.default_rng(2).gamma(2.0, 3.0, (9, 20, 20)).astype(np.float32)
    _assert_header(write_mrc(tmp_path / "a.mrcs", data), data)
    _assert_header(write_mrc(tmp_path / "b.mrc", data[0]), data[0])


def test_running_stats_merge_is_exact_for_any_batching():
    rng = np.random.default_rng(3)
    x = (1e4 + rng.standard_normal(100_003)).astype(np.float32)
    acc = RunningStats()
    for a in range(0, x.size, 997):
        acc.add(x[a:a + 997])
    r = acc.result()
    d = x.astype(np.float64)
    assert r["n_pixels"] == x.size
    assert r["mean"] == pytest.approx(d.mean(), rel=1e-12)
    assert r["std"] == pytest.approx(d.std(), rel=1e-9)
    assert (r["min"], r["max"]) == (d.min(), d.max())


def test_stack_writer_refuses_an_image_written_twice(tmp_path):
    data = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(ShapeError, match="already written"):
        with StackWriter(tmp_path / "x.mrcs", data.shape) as w:
            w.write(0, data[:3])
            w.write(2, data[2:])
    assert list(tmp_path.iterdir()) == []


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_streaming_a_stack_through_the_maps_keeps_rss_bounded(tmp_path):
    from cryoxplain.io.mrc import open_stack

    n, box = 4000, 64  # 65 MB
    out = tmp_path / "big.mrcs"
    before = _rss_mb()
    with StackWriter(out, (n, box, box)) as w:
        for s in range(0, n, 100):
            w.write(s, np.full((100, box, box), s, np.float32))
        after_write = _rss_mb()
    with open_stack(out) as st:
        for s, b in st.batches(100):
            assert b[0, 0, 0] == s
        after_read = _rss_mb()
    assert after_write - before < 25, (before, after_write)
    assert after_read - before < 25, (before, after_read)
    _assert_header(out, np.repeat(np.arange(0, n, 100, dtype=np.float64), 100 * box * box))


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_denoising_a_particle_set_keeps_rss_bounded(tmp_path):
    """Particle-set reading (contiguous rows) and ParticleSetWriter release their mapped pages too."""
    from cryoxplain.io.particles import open_particles, write_particle_set

    n, box = 4000, 64  # 65 MB in, 65 MB out
    with StackWriter(tmp_path / "p.mrcs", (n, box, box), 2.0) as w:
        for s in range(0, n, 200):
            w.write(s, np.full((200, box, box), s, np.float32))
    star = tmp_path / "p.star"
    star.write_text("data_\n\nloop_\n_rlnImageName #1\n" + "".join(f"{i + 1:06d}@p.mrcs\n" for i in range(n)))
    ps = open_particles(star, project_dir=tmp_path)
    before, peak = _rss_mb(), [0.0]

    def denoised():
        for p, x in ps.batches(100):
            peak[0] = max(peak[0], _rss_mb())  # while both maps are open
            yield p, x + 1

    out = write_particle_set(ps, tmp_path / "out", denoised())
    assert peak[0] - before < 25, (before, peak)
    assert out.exists()
