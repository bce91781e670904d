"""What a run leaves and shows: run folders, timings, the plot, live progress, the result
history and the nightly's merge and page."""
