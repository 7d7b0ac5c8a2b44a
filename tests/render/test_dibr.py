import math

import numpy as np
import pytest
import torch

from g3d import cameras
from g3d.render.dibr import Lighting, dense_soft_silhouette, render, soft_silhouette
from g3d.render.rasterize import project_vertices, rasterize
from g3d.train.template import build_template


def _camera(B=1, az=30.0, el=15.0, dist=3.0, size=64, fov=40.0, dtype=torch.float32):
    R, t = cameras.from_azimuth_elevation([az] * B, [el] * B, [dist] * B)
    K = np.broadcast_to(cameras.intrinsics(size, size, fov), (B, 3, 3))
    return (torch.tensor(np.array(K), dtype=dtype), torch.tensor(R, dtype=dtype), torch.tensor(t, dtype=dtype))


def test_sphere_silhouette_matches_the_analytic_disk():
    tpl = build_template(3)
    size, dist, r = 128, 3.0, 0.8
    K, R, t = _camera(size=size, dist=dist)
    out = render(tpl.verts[None] * r, tpl.faces, K, R, t, size, size)
    f = K[0, 0, 0].item()
    rad = f * r / math.sqrt(dist**2 - r**2)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    disk = (xs - size / 2) ** 2 + (ys - size / 2) ** 2 <= rad**2
    hard = out.fragments.mask[0].numpy()
    iou = (hard & disk).sum() / (hard | disk).sum()
    assert iou > 0.99, iou
    # The soft silhouette is the hard one plus DIB-R's blur band (about a pixel at 128 px).
    alpha = out.alpha[0, 0].numpy()
    assert (alpha[hard] == 1).all()
    soft = alpha > 0.5
    assert (soft & disk).sum() / (soft | disk).sum() > 0.95
    ring = (~hard) & ((xs - size / 2) ** 2 + (ys - size / 2) ** 2 > (rad + 3) ** 2)
    assert alpha[ring].max() < 0.05


@pytest.mark.parametrize("sigma, pixels", [(0.02, ((12, 2.5), (11, 1.5))), (1.0 / 7000.0, ((10, 0.5), (11, 1.5)))])
def test_soft_silhouette_is_exp_of_minus_d2_over_sigma_at_a_known_distance(sigma, pixels):
    """One triangle with a vertical edge at x = 10 px in a 32 px image: background pixels in row 16 whose
    centres lie 0.5, 1.5 or 2.5 px from that edge (the nearest part of the triangle) get alpha =
    exp(-d^2 / sigma) with d in NDC units (2 / 32 per pixel), computed here from first principles."""
    uvz = torch.tensor([[[2.0, 2.0, 1.0], [10.0, 2.0, 1.0], [10.0, 30.0, 1.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    covered = torch.zeros(1, 32, 32, dtype=torch.bool)
    alpha = soft_silhouette(uvz, faces, covered, sigma=sigma)
    for xi, d_px in pixels:
        d = d_px * 2.0 / 32.0
        assert alpha[0, 16, xi].item() == pytest.approx(math.exp(-d * d / sigma), rel=1e-9, abs=1e-12), (xi, sigma)
    assert alpha[0, 16, pixels[0][0]].item() > 1e-4  # a pixel the soft edge reaches
    covered[0, 16, 11] = True
    assert soft_silhouette(uvz, faces, covered, sigma=sigma)[0, 16, 11].item() == 1.0  # covered pixels are 1


def test_sparse_soft_silhouette_equals_the_dense_reference():
    tpl = build_template(2)
    K, R, t = _camera(B=2, size=48)
    verts = tpl.verts[None].repeat(2, 1, 1) * torch.tensor([0.9, 0.5, 1.2])
    verts[1] += 0.2
    cam = torch.einsum("bij,bvj->bvi", R, verts) + t[:, None]
    uvz = project_vertices(cam, K)
    covered = rasterize(cam, tpl.faces, K, 48, 48).mask
    sparse = soft_silhouette(uvz, tpl.faces, covered)
    dense = dense_soft_silhouette(uvz, tpl.faces, covered)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)
    edge = (sparse > 0.01) & (sparse < 0.99)
    assert edge.sum() > 50  # a real soft band around the outline


def _fd_check(fn, x, eps=1e-6, n=12, seed=0):
    x = x.clone().requires_grad_(True)
    fn(x).backward()
    g = x.grad.clone()
    rng = np.random.default_rng(seed)
    flat = x.detach().reshape(-1)
    idx = rng.choice(flat.numel(), n, replace=False)
    for i in idx:
        xp, xm = flat.clone(), flat.clone()
        xp[i] += eps
        xm[i] -= eps
        num = (fn(xp.view_as(x)) - fn(xm.view_as(x))).item() / (2 * eps)
        assert num == pytest.approx(g.reshape(-1)[i].item(), rel=1e-4, abs=1e-6), int(i)


def test_finite_difference_gradients_for_vertices_and_texture():
    torch.manual_seed(0)
    tpl = build_template(1)
    K, R, t = _camera(size=24, dtype=torch.float64)
    verts = (tpl.verts[None].double() * torch.tensor([0.9, 0.6, 1.0], dtype=torch.float64))
    tex = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    w_img = torch.rand(1, 3, 24, 24, dtype=torch.float64)
    w_sil = torch.rand(1, 1, 24, 24, dtype=torch.float64)
    uvs = tpl.face_uvs.double()
    light = Lighting()

    def loss_v(v):
        o = render(v, tpl.faces, K, R, t, 24, 24, face_uvs=uvs, texture=tex, lighting=light)
        return (o.image * w_img).sum() + (o.alpha * w_sil).sum()

    def loss_t(tx):
        o = render(verts, tpl.faces, K, R, t, 24, 24, face_uvs=uvs, texture=tx, lighting=light, silhouette=False)
        return (o.image * w_img).sum()

    _fd_check(loss_v, verts)
    _fd_check(loss_t, tex)


def test_per_vertex_colours_and_lighting():
    tpl = build_template(2)
    K, R, t = _camera(az=0, el=0, size=32)
    red = torch.zeros(1, tpl.verts.shape[0], 3)
    red[..., 0] = 1
    out = render(tpl.verts[None] * 0.8, tpl.faces, K, R, t, 32, 32, vert_colors=red)
    m = out.fragments.mask[0]
    assert torch.allclose(out.image[0, 0][m], torch.ones(int(m.sum())), atol=1e-5)
    assert out.image[0, 1:].abs().max() < 1e-6 and out.image[0][:, ~m].abs().max() == 0
    lit = render(tpl.verts[None] * 0.8, tpl.faces, K, R, t, 32, 32, vert_colors=red, lighting=Lighting(ambient=0.2, diffuse=0.8, direction=(0, 1, 0)))
    top, bottom = lit.image[0, 0, 9, 16].item(), lit.image[0, 0, 23, 16].item()
    assert top > bottom  # lit from above


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_agree():
    tpl = build_template(3)
    K, R, t = _camera(B=2, size=64)
    verts = (tpl.verts[None] * torch.tensor([0.9, 0.6, 1.1])).repeat(2, 1, 1)
    tex = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    outs = []
    for dev in ("cpu", "cuda"):
        v = verts.to(dev).requires_grad_(True)
        o = render(v, tpl.faces.to(dev), K.to(dev), R.to(dev), t.to(dev), 64, 64, face_uvs=tpl.face_uvs.to(dev), texture=tex.to(dev))
        (o.image.sum() + o.alpha.sum()).backward()
        outs.append((o.image.cpu(), o.alpha.cpu(), v.grad.cpu()))
    (ia, aa, ga), (ib, ab, gb) = outs
    assert (ia - ib).abs().max() < 1e-4 and (aa - ab).abs().max() < 1e-4
    torch.testing.assert_close(ga, gb, atol=1e-3, rtol=1e-3)  # float index_add on GPU is order-dependent in the last bits


def test_per_image_lighting_matches_one_light_each_and_carries_gradients():
    tpl = build_template(2)
    K, R, t = _camera(az=30, el=10, size=24)
    verts = tpl.verts[None].expand(2, -1, -1) * 0.8
    K, R, t = (x.expand(2, *x.shape[1:]) for x in (K, R, t))
    white = torch.ones(2, tpl.verts.shape[0], 3)
    dirs = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.2, 0.3]], requires_grad=True)
    amb = torch.tensor([0.2, 0.5], requires_grad=True)
    both = render(verts, tpl.faces, K, R, t, 24, 24, vert_colors=white, lighting=Lighting(ambient=amb, diffuse=1 - amb, direction=dirs))
    for b in range(2):
        one = render(verts[b:b + 1], tpl.faces, K[b:b + 1], R[b:b + 1], t[b:b + 1], 24, 24, vert_colors=white[b:b + 1],
                     lighting=Lighting(ambient=float(amb[b]), diffuse=1 - float(amb[b]), direction=tuple(dirs[b].tolist())))
        assert torch.allclose(both.image[b], one.image[0], atol=1e-6)
    assert not torch.allclose(both.image[0], both.image[1])
    both.image.sum().backward()
    assert dirs.grad.abs().sum() > 0 and amb.grad.abs().sum() > 0


def test_specular_highlight_sits_where_the_normal_meets_the_half_vector_and_learns():
    """Blinn-Phong on a sphere: the highlight (the render with it less the render without) peaks at the pixel whose
    surface normal is the half-vector between the light and the camera, it is exactly 0 with strength 0, and the
    strength and the shininess get gradients (the light head predicts one, the network learns the other)."""
    tpl = build_template(4)
    size, dist, r = 96, 3.0, 0.8
    K, R, t = _camera(az=0.0, el=0.0, dist=dist, size=size)
    verts = tpl.verts[None] * r
    white = torch.full((1, tpl.verts.shape[0], 3), 0.5)
    light = (1.0, 0.3, 0.2)
    lam = render(verts, tpl.faces, K, R, t, size, size, vert_colors=white, lighting=Lighting(0.3, 0.7, light), silhouette=False)
    zero = render(verts, tpl.faces, K, R, t, size, size, vert_colors=white, lighting=Lighting(0.3, 0.7, light, specular=0.0), silhouette=False)
    assert torch.equal(lam.image, zero.image)
    ks = torch.tensor([0.6], requires_grad=True)
    p = torch.tensor([40.0], requires_grad=True)
    spec = render(verts, tpl.faces, K, R, t, size, size, vert_colors=white, lighting=Lighting(0.3, 0.7, light, specular=ks, shininess=p),
                  silhouette=False)
    hi = (spec.image - lam.image)[0, 0].detach()
    assert torch.allclose(spec.image[0, 0] - lam.image[0, 0], spec.image[0, 2] - lam.image[0, 2])  # white
    assert 0.5 < hi.max() <= 0.6 + 1e-5 and hi[~lam.fragments.mask[0]].abs().max() == 0
    # where the normal is the half-vector: the sphere point r * h seen by the camera (centre (0, 0, dist), nearly)
    centre = -R[0].T @ t[0]
    l = torch.tensor(light) / torch.tensor(light).norm()
    v = centre / centre.norm()
    h = (l + v) / (l + v).norm()
    for _ in range(3):  # the view direction from the point itself
        v = (centre - r * h) / (centre - r * h).norm()
        h = (l + v) / (l + v).norm()
    uvz = project_vertices((R[0] @ (r * h) + t[0])[None, None], K)[0, 0]
    y, x = np.unravel_index(int(hi.argmax()), hi.shape)
    assert abs(x + 0.5 - float(uvz[0])) < 2.0 and abs(y + 0.5 - float(uvz[1])) < 2.0
    # a swapped half-vector (light and camera mirrored in x) would put it on the other side of the centre
    assert (x + 0.5 - size / 2) * (float(uvz[0]) - size / 2) > 0
    spec.image.sum().backward()
    assert ks.grad.abs() > 0 and p.grad.abs() > 0 and torch.isfinite(p.grad).all()
