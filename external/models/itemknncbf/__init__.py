from external.models.itemknncbf.itemknncbf import ItemKNNCBF

__all__ = ["ItemKNNCBF"]
