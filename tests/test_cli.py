"""The console script: same resolver and text renderings as the API."""

import pytest

from app.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _mail_safe(text):
    for line in text.splitlines():
        assert len(line) <= 72 and line.isascii() and "\t" not in line, line


def test_resolve_seed_case(capsys):
    rc, out, _ = run(capsys, "resolve", "--kernel", "v4.2", "--ncdma", "1", "--cd", "1", "--gpa", "0x1000")
    assert rc == 0 and "mask 0x70" in out and "b18d5431acc7" in out
    _mail_safe(out)
    rc, out, _ = run(capsys, "resolve", "--kernel", "v6.7", "--ncdma", "1", "--cd", "1", "--gpa", "0x1000")
    assert "mask 0x30" in out and "c9f65a3f2d92" in out
    assert "kernel=v6.7" in out and "ncdma=1" in out  # the permalink


def test_resolve_from_a_permalink(capsys):
    rc, out, _ = run(capsys, "resolve", "--link", "http://x/?v=1&kernel=v6.7&ncdma=1&cdnw_quirk=0&cd=1")
    assert rc == 0 and "mask 0x40" in out


def test_zap_and_diff_and_replay(capsys):
    rc, out, _ = run(capsys, "zap", "--kernel", "v6.7", "--ncdma", "1", "--cd", "1", "--mtrr", "ovmf",
                     "--event", "cr0_cd", "--event-value", "0")
    assert rc == 0 and "0xfd000000" in out and "stale" in out
    _mail_safe(out)
    rc, out, _ = run(capsys, "diff", "v4.2", "v6.7")
    assert rc == 0 and "60" in out
    _mail_safe(out)
    rc, out, _ = run(capsys, "replay", "--preset", "seabios", "--vcpus", "2", "--kernel", "v4.2", "--kernel", "v6.11")
    assert rc == 0 and "v4.2" in out and "v6.11" in out and "v6.7 " not in out
    _mail_safe(out)


def test_eras(capsys):
    rc, out, _ = run(capsys, "eras")
    assert rc == 0 and all(e in out for e in ("v4.2", "series-v3", "v6.7", "v6.11-rc1", "v6.11", "v6.16"))


def test_eras_fit_72_columns_and_keep_every_word(capsys):
    """Issue 15: text output keeps to 72 columns; wrapping must not drop any of a title or subject."""
    from app.kvm.eras import ERAS

    rc, out, _ = run(capsys, "eras")
    assert rc == 0
    assert max(len(line) for line in out.splitlines()) <= 72
    words = out.split()
    for e in ERAS.values():
        for text in (e.title, *(c.subject for c in e.commits)):
            for w in text.split():
                assert w in words, (e.id, w)


@pytest.mark.parametrize("argv, needle", [
    (("resolve", "--pat", "0x2"), "PAT entry 0 has reserved type 2"),
    (("resolve", "--kernel", "v5.0"), "unknown kernel era"),
    (("resolve", "--nw", "1"), "CR0.NW=1 with CR0.CD=0"),
    (("zap", "--kernel", "v6.7"), "no event given"),
    (("replay", "--preset", "coreboot"), "unknown generator"),
])
def test_bad_input_exits_2_with_a_message(capsys, argv, needle):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and needle in err and out == ""


def test_kernel_version_is_answered_for_that_version(capsys):
    code, out, _ = run(capsys, "resolve", "--kernel", "6.12.78", "--gpa", "0xa0000")
    assert code == 0
    assert "Era v6.16:" in out and "Kernel 6.12.78: 6.12.78 carries the stable backport of c9c1e20b4c7d" in out
    assert "kvm_is_mmio_pfn (6.12.78)" in out
    code, out, _ = run(capsys, "zap", "--kernel", "6.8.0-45-generic", "--ncdma", "1", "--cd", "1",
                       "--event", "cr0_cd", "--event-value", "0")
    assert code == 0 and "Kernel 6.8.0-45-generic: 6.8.0 is in era v6.7" in out
    assert "distribution suffix '-45-generic' ignored" in out
    code, out, err = run(capsys, "resolve", "--kernel", "6.12")
    assert code == 0 and "Kernel 6.12:" in out
    code, out, err = run(capsys, "resolve", "--kernel", "9.1")
    assert code == 2 and "outside the modelled versions" in err
