"""``sharpeyes demo``: simulated cameras and the demo region tree."""
