"""dermnode workers: Celery tasks that analyse complete studies and deliver SR + SEG."""
