"""Transform layer: filters and multi-scale decompositions shared by the fusion methods.

Every function here works on arrays whose last ``spatial_dims`` axes (2 or 3) are spatial; any leading
axes (inputs, slices) are a batch that is never filtered across. Decompositions follow PyWavelets'
shape: ``decompose(x, ...) -> list of bands`` and ``reconstruct(bands) -> x``, with perfect
reconstruction tested.
"""

from .filters import box_mean, gaussian_smooth, guided_filter, laplacian_filter
from .pyramid import gaussian_pyramid, laplacian_pyramid, reconstruct_laplacian_pyramid, max_pyramid_levels
from .nsst import NSSTBands, nsst_decompose, nsst_reconstruct
from .nsct import NSCTBands, nsct_decompose, nsct_reconstruct

__all__ = ["box_mean", "gaussian_smooth", "guided_filter", "laplacian_filter", "gaussian_pyramid",
           "laplacian_pyramid", "reconstruct_laplacian_pyramid", "max_pyramid_levels",
           "nsst_decompose", "nsst_reconstruct", "NSSTBands", "nsct_decompose", "nsct_reconstruct", "NSCTBands"]
