"""LightningDataModules and readers: Fashion-MNIST, image folders."""
from data.fashion_mnist import FashionMNISTDataModule
from data.image_folder import ImageFolderDataModule

__all__ = ["FashionMNISTDataModule", "ImageFolderDataModule"]
