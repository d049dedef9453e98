"""The response models read the core's dataclasses by name (issue 11, "schemas from the
core"): a member a model does not derive in its `core_members` must exist on the core
class it is built from, so renaming a core field breaks this test, not a request."""

from __future__ import annotations

import dataclasses

import pytest

from app.analysis import DiffGroup, DiffRow, EraDiff
from app.api import schemas as s
from app.kvm.era import Commit, Era
from app.kvm.memmap import MapRun, MtrrRange
from app.kvm.replay import ReplayResult, ZapCallRecord
from app.kvm.resolve import PageSizeRow, PatRow, Resolution
from app.kvm.step import Step
from app.kvm.trace_import import Imported, Thread
from app.kvm.versions import KernelInfo
from app.kvm.zap import Change, ZapAudit
from app.x86.ept import EptField, EptLeaf
from app.x86.mtrr import Lookup, MtrrState, VarMtrr

# model -> (core class, members the model derives or the caller adds)
READS = {
    s.CommitOut: (Commit, set()),
    s.EraOut: (Era, set()),
    s.EptFieldOut: (EptField, set()),
    s.LeafOut: (EptLeaf, {"fields", "misconfig"}),
    s.EptOut: (Resolution, {"mask", "notation"}),
    s.LookupOut: (Lookup, set()),
    s.PatRowOut: (PatRow, set()),
    s.StepOut: (Step, set()),
    s.PageSizeOut: (PageSizeRow, set()),
    s.KernelOut: (KernelInfo, set()),
    s.ResolveResponse: (Resolution, {"kernel", "kernel_info", "host_page", "ept", "guest_mtrr_type", "kvm_mtrr_type",
                                     "pat", "permalink"}),
    s.ChangeOut: (Change, {"pages"}),
    s.ZapResponse: (ZapAudit, {"kernel", "kernel_info", "permalink"}),
    s.DiffRowOut: (DiffRow, {"state"}),
    s.DiffGroupOut: (DiffGroup, set()),
    s.DiffResponse: (EraDiff, {"kernel_a", "kernel_b", "groups", "truncated", "permalink"}),
    s.ZapCallOut: (ZapCallRecord, set()),
    s.ReplayEraOut: (ReplayResult, {"kernel", "error"}),
    s.VarPairOut: (VarMtrr, set()),
    s.MtrrStateOut: (MtrrState, set()),
    s.CaptureThreadOut: (Thread, set()),
    s.CaptureOut: (Imported, set()),
    s.MapRunOut: (MapRun, {"ept"}),
    s.MtrrRangeOut: (MtrrRange, set()),
}


def members(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} | set(dir(cls))


@pytest.mark.parametrize("model", list(READS), ids=lambda m: m.__name__)
def test_every_member_read_by_name_exists_in_the_core(model):
    core, derived = READS[model]
    names = {f.alias or n for n, f in model.model_fields.items()}
    assert derived <= names, f"{model.__name__} derives members it does not have: {derived - names}"
    missing = names - derived - members(core)
    assert not missing, f"{model.__name__} reads {sorted(missing)}, which {core.__name__} does not have"


def test_host_page_steps_come_from_kvm_is_mmio_pfn_checks():
    """HostPageOut.path is the era's Step rows (app/kvm/step.py), read as they are."""
    assert members(Step) >= set(s.StepOut.model_fields)
