"""The cache tests read the data tests' small image dataset."""

from tests.data import conftest as data_fixtures

image_source, image_data_dir = data_fixtures.image_source, data_fixtures.image_data_dir
