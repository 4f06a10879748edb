"""ml_collections config files, one run each: `get_config(arg)`, loaded by path; the package never imports them."""
