"""cryoxplain.distributed: launcher environments and the static shard split."""
import pytest

from cryoxplain import distributed
from cryoxplain.errors import ParameterError


def test_context_from_torchrun_and_slurm_array():
    assert distributed.context(env={}) == distributed.Context()
    c = distributed.context(env={"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (c.rank, c.world_size, c.local_rank, c.launcher, c.main) == (3, 4, 1, "torchrun", False)
    arr = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "5"}
    assert distributed.context(env=arr) == distributed.Context()  # training: arrays are not a world
    assert distributed.context(allow_array=True, env=arr) == distributed.Context(2, 4, 0, "slurm-array")
    # torchrun inside an array task (e.g. srun torchrun in each task): torchrun's variables win
    assert distributed.context(allow_array=True, env={**arr, "RANK": "0", "WORLD_SIZE": "2"}).launcher == "torchrun"
    with pytest.raises(ParameterError, match="inconsistent"):
        distributed.context(env={"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ParameterError, match="not an integer"):
        distributed.context(env={"RANK": "x", "WORLD_SIZE": "2"})


@pytest.mark.parametrize("n,w", [(0, 3), (1, 4), (7, 3), (12, 4), (5, 1), (100, 7)])
def test_shard_range_is_a_contiguous_partition(n, w):
    ranges = [distributed.shard_range(n, r, w) for r in range(w)]
    assert [i for rg in ranges for i in rg] == list(range(n))  # every unit once, in order, no padding
    sizes = [len(rg) for rg in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert distributed.shard(list("abcdefg"), distributed.Context(1, 3, 1, "torchrun")) == list("de")  # 3, 2, 2


def test_no_process_group_without_launcher():
    import torch

    distributed.barrier()  # no-ops
    t = torch.ones(2)
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1, 1]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.init(ctx=distributed.Context()) == distributed.Context()
    assert not distributed.is_initialized()
    assert distributed.device("cpu", distributed.Context(1, 2, 1, "torchrun")).type == "cpu"
