"""The inverse-graphics trainer: image -> textured mesh, trained through the DIB-R style renderer."""
