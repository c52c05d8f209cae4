"""The name of k3c's sandbox ("pause") image, a leaf on its own.

The daemon builds the image under this name (:mod:`k3c.daemon.pause`) and gives it to containerd as
``sandbox_image``; the image controller must never remove it and the CLI hides it from ``k3c images``.
Those live in different layers, so the name sits below all of them rather than in the daemon.
"""

#: Name of k3c's sandbox image in containerd (k3c's own registry-less name; never pulled).
PAUSE_IMAGE = "k3c.io/pause:3.9-k3c"
