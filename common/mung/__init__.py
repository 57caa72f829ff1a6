"""MuNG's app layer shared by every backbone (data policies, run bookkeeping), on top of ``noise_generator``."""
