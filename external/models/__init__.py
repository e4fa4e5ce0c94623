"""Every class exported here is available in a config as ``external.<ClassName>``."""
from external.models.vbpr import VBPR
from external.models.lightgcnm import LightGCNM
from external.models.mmgcn import MMGCN
from external.models.grcn import GRCN
from external.models.amr import AMR
from external.models.bm3 import BM3
from external.models.dlrm import DLRM, DLRM_CLIP
from external.models.balanced import *  # noqa: F401,F403  (VBPR_MB, LightGCNM_MB, ... for the bases present)
from external.models.freedom import FREEDOM
from external.models.slmrec import SLMRec
from external.models.lattice import LATTICE
from external.models.itemknncbf import ItemKNNCBF
from external.models.mbpr import MBPR
from external.models.dualgnn import DualGNN
from external.models.mgcn import MGCN
from external.models.lgmrec import LGMRec
from external.models.dragon import DRAGON
from external.models.diffmm import DiffMM
from external.models.mvgae import MVGAE
from external.models.mmgcf import MMGCF
from external.models.smore import SMORE
from external.models.pgl import PGL
from external.models.damrs import DAMRS
from external.models.ngcfm import NGCFM
