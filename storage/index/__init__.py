"""What the index knows: segments and gaps, keyframe tables, the camera registry (with encrypted
credentials), leases, published camera statuses, media (thumbnails, motion), coverage and usage."""
