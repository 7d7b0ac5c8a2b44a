"""StyleGAN-R (paper §4.2): the inverse-graphics network drives the generator -- 3D-controllable neural
rendering, swaps of shape, texture and background, and turntables (``g3d neural``)."""
