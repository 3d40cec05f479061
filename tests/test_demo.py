"""The README's loss demonstration runs end to end and prints every loss."""
from fastgsl import demo


def test_demo_prints_every_loss(capsys):
    demo.main(["--batch", "1", "--size", "17", "--device", "cpu"])
    out = capsys.readouterr().out
    for name in ("Dice", "Dice-CE", "CE", "GDL", "Boundary", "Hausdorff", "GSL", "Dice-CE + GSL"):
        assert f"\n{name} " in out or f"\n{name}  " in out, name
    assert "nan" not in out.lower()
