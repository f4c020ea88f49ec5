"""The op registry: (domain, op_type) -> class. One import line per op; domain "" is ONNX's default.

To add an op: write ``verify/ops/op_<name>.py`` with one class named after the op_type (see
``verify/ops/base.py`` for the contract), import it here and add it to ``OPS``.
"""

from __future__ import annotations

from verify.ops.base import Op
from verify.ops.op_abs import Abs
from verify.ops.op_add import Add
from verify.ops.op_averagepool import AveragePool
from verify.ops.op_batchnormalization import BatchNormalization
from verify.ops.op_cast import Cast
from verify.ops.op_clip import Clip
from verify.ops.op_concat import Concat
from verify.ops.op_constant import Constant
from verify.ops.op_constantofshape import ConstantOfShape
from verify.ops.op_conv import Conv
from verify.ops.op_div import Div
from verify.ops.op_dropout import Dropout
from verify.ops.op_equal import Equal
from verify.ops.op_erf import Erf
from verify.ops.op_exp import Exp
from verify.ops.op_expand import Expand
from verify.ops.op_flatten import Flatten
from verify.ops.op_gather import Gather
from verify.ops.op_gelu import Gelu
from verify.ops.op_gemm import Gemm
from verify.ops.op_globalaveragepool import GlobalAveragePool
from verify.ops.op_globalmaxpool import GlobalMaxPool
from verify.ops.op_identity import Identity
from verify.ops.op_layernormalization import LayerNormalization
from verify.ops.op_leakyrelu import LeakyRelu
from verify.ops.op_linfdist import LinfDist
from verify.ops.op_linfdistconv import LinfDistConv
from verify.ops.op_matmul import MatMul
from verify.ops.op_max import Max
from verify.ops.op_maxpool import MaxPool
from verify.ops.op_min import Min
from verify.ops.op_mod import Mod
from verify.ops.op_mul import Mul
from verify.ops.op_neg import Neg
from verify.ops.op_pad import Pad
from verify.ops.op_pow import Pow
from verify.ops.op_reducemax import ReduceMax
from verify.ops.op_reducemean import ReduceMean
from verify.ops.op_reducesum import ReduceSum
from verify.ops.op_relu import Relu
from verify.ops.op_reshape import Reshape
from verify.ops.op_shape import Shape
from verify.ops.op_sigmoid import Sigmoid
from verify.ops.op_slice import Slice
from verify.ops.op_softmax import Softmax
from verify.ops.op_split import Split
from verify.ops.op_sqrt import Sqrt
from verify.ops.op_squeeze import Squeeze
from verify.ops.op_sub import Sub
from verify.ops.op_sum import Sum
from verify.ops.op_tanh import Tanh
from verify.ops.op_transpose import Transpose
from verify.ops.op_unsqueeze import Unsqueeze
from verify.ops.op_where import Where

OPS: dict[tuple[str, str], type[Op]] = {
    ("linf", "LinfDist"): LinfDist,
    ("linf", "LinfDistConv"): LinfDistConv,
    ("", "Abs"): Abs,
    ("", "Add"): Add,
    ("", "AveragePool"): AveragePool,
    ("", "BatchNormalization"): BatchNormalization,
    ("", "Cast"): Cast,
    ("", "Clip"): Clip,
    ("", "Concat"): Concat,
    ("", "Constant"): Constant,
    ("", "ConstantOfShape"): ConstantOfShape,
    ("", "Conv"): Conv,
    ("", "Div"): Div,
    ("", "Dropout"): Dropout,
    ("", "Equal"): Equal,
    ("", "Erf"): Erf,
    ("", "Exp"): Exp,
    ("", "Expand"): Expand,
    ("", "Flatten"): Flatten,
    ("", "Gather"): Gather,
    ("", "Gelu"): Gelu,
    ("", "Gemm"): Gemm,
    ("", "GlobalAveragePool"): GlobalAveragePool,
    ("", "GlobalMaxPool"): GlobalMaxPool,
    ("", "Identity"): Identity,
    ("", "LayerNormalization"): LayerNormalization,
    ("", "LeakyRelu"): LeakyRelu,
    ("", "MatMul"): MatMul,
    ("", "Max"): Max,
    ("", "MaxPool"): MaxPool,
    ("", "Min"): Min,
    ("", "Mod"): Mod,
    ("", "Mul"): Mul,
    ("", "Neg"): Neg,
    ("", "Pad"): Pad,
    ("", "Pow"): Pow,
    ("", "ReduceMax"): ReduceMax,
    ("", "ReduceMean"): ReduceMean,
    ("", "ReduceSum"): ReduceSum,
    ("", "Relu"): Relu,
    ("", "Reshape"): Reshape,
    ("", "Shape"): Shape,
    ("", "Sigmoid"): Sigmoid,
    ("", "Slice"): Slice,
    ("", "Softmax"): Softmax,
    ("", "Split"): Split,
    ("", "Sqrt"): Sqrt,
    ("", "Squeeze"): Squeeze,
    ("", "Sub"): Sub,
    ("", "Sum"): Sum,
    ("", "Tanh"): Tanh,
    ("", "Transpose"): Transpose,
    ("", "Unsqueeze"): Unsqueeze,
    ("", "Where"): Where,
}


def supported_ops() -> list[str]:
    """Sorted names ``domain::op_type`` (``op_type`` alone for the default domain)."""
    return sorted(f"{d}::{t}" if d else t for d, t in OPS)
