"""fastgsl.dtm against the peers themselves: SimpleITK SignedMaurerDistanceMap ("itk"), scipy ("edt"), the
boundary-loss repository's formula on scipy EDTs ("kervadec"); fills, batching, labels, errors."""
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

import fastgsl.ops.edt as E
from fastgsl.dtm import DTM_CONVENTIONS, labels_to_dtm, signed_distance


def sitk_dtm(m: np.ndarray, spacing=None) -> np.ndarray:
    """Peer: SimpleITK with the paper's / MIST's options (ITK spacing is x, y, z: the reverse of numpy order)."""
    img = sitk.GetImageFromArray(m.astype(np.uint8))
    if spacing is not None:
        img.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    out = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return sitk.GetArrayFromImage(out)


def scipy_signed(m: np.ndarray, spacing=None) -> np.ndarray:
    """Peer: EDT(~m) - EDT(m) with scipy's float64 EDT, rounded once to float32."""
    return (ndimage.distance_transform_edt(~m, sampling=spacing)
            - ndimage.distance_transform_edt(m, sampling=spacing)).astype(np.float32)


def kervadec(m: np.ndarray, spacing=None) -> np.ndarray:
    """Peer: boundary-loss repo one_hot2dist, negmask*EDT(negmask) - (EDT(posmask) - 1)*posmask (zeros if absent)."""
    if not m.any():
        return np.zeros(m.shape, np.float32)
    neg = ~m
    return (neg * ndimage.distance_transform_edt(neg, sampling=spacing)
            - (ndimage.distance_transform_edt(m, sampling=spacing) - 1) * m).astype(np.float32)


PEERS = {"itk": sitk_dtm, "edt": scipy_signed, "kervadec": kervadec}


def blobs(rng, shape, n=4, classes=2):
    """Label map of n random balls (odd radii, some cut by the border, some disjoint)."""
    lab = np.zeros(shape, np.int64)
    grid = np.indices(shape)
    for _ in range(n):
        c = [rng.integers(0, s) for s in shape]
        r = rng.uniform(1.0, max(2.0, min(shape) / 3))
        d = sum((g - ci) ** 2 for g, ci in zip(grid, c))
        lab[d <= r * r] = rng.integers(1, classes) if classes > 1 else 1
    return lab


def check(got: np.ndarray, ref: np.ndarray, exact: bool):
    if exact:
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def masks_2d_3d():
    rng = np.random.default_rng(2024)
    cases = {
        "noise2d": rng.random((23, 31)) < 0.3,
        "noise3d": rng.random((13, 11, 17)) < 0.4,
        "blobs2d": blobs(rng, (37, 29), 5) > 0,
        "blobs3d": blobs(rng, (19, 23, 21), 4) > 0,
        "one_voxel2d": np.zeros((15, 13), bool),
        "one_voxel3d": np.zeros((9, 11, 7), bool),
        "border2d": np.zeros((17, 19), bool),
        "border3d": np.zeros((11, 9, 13), bool),
        "disjoint3d": np.zeros((15, 17, 13), bool),
        "thin_line": np.zeros((21, 25), bool),
        "big_axis": blobs(rng, (1103, 23), 6) > 0,
    }
    cases["one_voxel2d"][7, 4] = True
    cases["one_voxel3d"][0, 5, 6] = True  # on a face of the image
    cases["border2d"][:5, :] = True
    cases["border2d"][10:, 17:] = True
    cases["border3d"][:, :3, :] = True
    cases["border3d"][5:, 7:, 10:] = True
    cases["disjoint3d"][2:4, 2:5, 2:4] = True
    cases["disjoint3d"][9:13, 10:15, 8:12] = True
    cases["disjoint3d"][14, 0, 12] = True
    cases["thin_line"][3:18, 12] = True
    return cases


CASES = masks_2d_3d()


@pytest.mark.parametrize("convention", DTM_CONVENTIONS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_signed_distance_equals_peer_isotropic(name, convention, seen):
    m = CASES[name]
    got = signed_distance(torch.from_numpy(m), convention=convention)
    assert got.dtype == torch.float32 and got.shape == m.shape
    assert seen.last("edt") == "host"
    check(got.numpy(), PEERS[convention](m), exact=True)


@pytest.mark.parametrize("convention", DTM_CONVENTIONS)
@pytest.mark.parametrize("name,spacing", [("noise2d", (0.7, 1.9)), ("blobs3d", (2.5, 0.6, 1.1)),
                                          ("border3d", (1.3, 0.9, 3.1)), ("one_voxel3d", (0.5, 2.0, 4.0)),
                                          ("blobs2d", (1.5, 1.5))])
def test_signed_distance_equals_peer_anisotropic(name, spacing, convention):
    m = CASES[name]
    got = signed_distance(torch.from_numpy(m), spacing, convention=convention).numpy()
    ref = PEERS[convention](m, spacing)
    check(got, ref, exact=False)
    if convention != "itk" and all(np.log2(s).is_integer() for s in spacing):
        check(got, ref, exact=True)  # dyadic spacing: exact against scipy too


def test_itk_large_2d_axes_equal_sitk():
    rng = np.random.default_rng(8)
    for shape in [(1101, 41), (39, 1111)]:
        m = blobs(rng, shape, 8) > 0
        check(signed_distance(torch.from_numpy(m)).numpy(), sitk_dtm(m), exact=True)


@pytest.mark.parametrize("C", [2, 3, 5])
@pytest.mark.parametrize("convention", DTM_CONVENTIONS)
@pytest.mark.parametrize("nd", [2, 3])
def test_labels_to_dtm_equals_peer_per_class(C, convention, nd):
    rng = np.random.default_rng(C * 10 + nd)
    shape = (3,) + ((27, 33) if nd == 2 else (11, 13, 9))
    lab = np.stack([blobs(rng, shape[1:], 5, C) for _ in range(shape[0])])
    lab[1][lab[1] == C - 1] = 0  # class C-1 absent from item 1
    spacing = (1.0,) * nd if C != 3 else ((0.8, 1.7) if nd == 2 else (1.2, 0.9, 2.3))
    got = labels_to_dtm(torch.from_numpy(lab), C, spacing, convention)
    assert got.shape == (3, C) + shape[1:] and got.dtype == torch.float32
    diag = math.sqrt(sum((n * s) ** 2 for n, s in zip(shape[1:], spacing)))
    for b in range(shape[0]):
        for c in range(C):
            m = lab[b] == c
            if not m.any():
                fill = 0.0 if convention == "kervadec" else diag
                assert torch.all(got[b, c] == fill), (b, c)
            elif m.all():
                fill = 0.0 if convention == "kervadec" else diag
                assert torch.all(got[b, c] == -fill)
            else:
                check(got[b, c].numpy(), PEERS[convention](m, spacing), exact=C != 3)


def test_labels_with_channel_axis_and_signed_distance_batch_agree():
    lab = torch.from_numpy(blobs(np.random.default_rng(1), (13, 15, 11), 5, 3))[None].repeat(2, 1, 1, 1)
    lab[1] = lab[1].flip(0)
    a = labels_to_dtm(lab, 3)
    b = labels_to_dtm(lab[:, None], 3, spatial_dims=3)
    assert torch.equal(a, b)
    masks = torch.stack([lab == c for c in range(3)], 1)  # (B, C, *spatial) one-hot, for this check only
    assert torch.equal(signed_distance(masks, spatial_dims=3), a)


@pytest.mark.parametrize("convention", DTM_CONVENTIONS)
def test_empty_and_full_masks_fill(convention):
    shape, spacing = (5, 7, 9), (1.0, 2.0, 0.5)
    diag = math.sqrt(5 ** 2 + 14 ** 2 + 4.5 ** 2)
    x = torch.zeros((2,) + shape)
    x[1] = 1
    default = 0.0 if convention == "kervadec" else diag
    for fill, v in [(None, default), ("diagonal", diag), ("zero", 0.0), (3.5, 3.5)]:
        out = signed_distance(x, spacing, convention=convention, fill=fill)
        assert torch.all(out[0] == np.float32(v)) and torch.all(out[1] == -np.float32(v)), fill
    lab = torch.zeros((1,) + shape, dtype=torch.long)
    out = labels_to_dtm(lab, 2, spacing, convention, fill=2.0)
    assert torch.all(out[0, 0] == -2.0) and torch.all(out[0, 1] == 2.0)


def test_one_batch_item_empty_does_not_disturb_others():
    rng = np.random.default_rng(4)
    m = np.stack([np.zeros((9, 10, 11), bool), rng.random((9, 10, 11)) < 0.2])
    out = signed_distance(torch.from_numpy(m), spatial_dims=3, fill=9.0).numpy()
    assert np.all(out[0] == 9.0)
    check(out[1], sitk_dtm(m[1]), exact=True)


def test_bad_inputs():
    lab = torch.randint(0, 3, (2, 5, 6, 7))
    with pytest.raises(TypeError, match="integer"):
        labels_to_dtm(lab.float(), 3)
    with pytest.raises(TypeError, match="integer"):
        labels_to_dtm(lab > 0, 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        labels_to_dtm(lab + 1, 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        labels_to_dtm(lab - 1, 3)
    with pytest.raises(ValueError, match="num_classes"):
        labels_to_dtm(lab, 0)
    with pytest.raises(ValueError, match="num_classes"):
        labels_to_dtm(torch.zeros(2, 4, 4, dtype=torch.long), True)  # a bool is not a class count
    with pytest.raises(ValueError, match="2-D and 3-D"):
        labels_to_dtm(torch.zeros(2, 7, dtype=torch.long), 2)  # 1-D
    with pytest.raises(ValueError, match="2-D and 3-D"):
        labels_to_dtm(torch.zeros(2, 3, 4, 5, 6, dtype=torch.long), 2)  # 4-D
    with pytest.raises(ValueError, match="spacing"):
        labels_to_dtm(lab, 3, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        labels_to_dtm(lab, 3, (1.0, float("nan"), 1.0))
    with pytest.raises(ValueError, match="spacing"):
        labels_to_dtm(lab, 3, (1.0, 1.0))
    with pytest.raises(ValueError, match="convention"):
        labels_to_dtm(lab, 3, convention="maurer")
    with pytest.raises(ValueError, match="fill"):
        labels_to_dtm(lab, 3, fill="nearest")
    with pytest.raises(ValueError, match="fill"):
        signed_distance(lab > 0, fill=float("inf"))
    with pytest.raises(ValueError, match="2-D and 3-D"):
        signed_distance(torch.zeros(7))
    with pytest.raises(ValueError, match="2-D and 3-D"):
        signed_distance(torch.zeros(2, 3, 4, 5), spatial_dims=4)
    with pytest.raises(TypeError, match="torch.Tensor"):
        signed_distance(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="spacing"):
        signed_distance(lab > 0, -1.0)
    with pytest.raises(TypeError, match="spacing"):
        signed_distance(lab > 0, "11")  # a string is not a sequence of numbers
