import matplotlib

matplotlib.use("Agg")  # tests draw figures off-screen
