"""The views: one module per command's rendering (DESIGN.md §3), plus :mod:`.widgets` (the
one table builder, the correlation cell, the heatmap, number formatting) and :mod:`.progress`
(live displays, the interrupt safe point). Views build Rich renderables from the engine's
results; :mod:`gradts_cli.output` prints them."""
