"""Device meshes, logical-axis rules and global-array assembly."""
