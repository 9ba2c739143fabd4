"""Labels made rather than imported: boxes proposed for images labelled per image (autolabel), objects
pasted onto real backgrounds (composite), and the pixel segmentation both use (segment)."""
