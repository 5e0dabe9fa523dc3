"""imgcls: a reproducible image-classification pipeline on DVC.

Importing the package pins PyTorch's CPU kernels to AVX2 (see `imgcls.core.reproducible`) before
any torch operation can pick them, so every stage, test and script that uses imgcls trains
to the same bytes on AVX2 and AVX-512 machines.
"""

from imgcls.core.reproducible import pin_cpu_kernels

CPU_KERNELS = pin_cpu_kernels()
