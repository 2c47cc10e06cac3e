package checkpoint

import (
	"math"

	"github.com/x448/float16"
)

// Float16ToFloat32 decodes an IEEE 754 binary16 value (1 sign, 5 exponent, 10 fraction bits). Every
// float16 value, subnormals, infinities and NaNs included, is exactly representable as a float32.
func Float16ToFloat32(h uint16) float32 {
	return float16.Frombits(h).Float32()
}

// Float32ToFloat16 encodes f as IEEE 754 binary16, rounding to nearest with ties to even (as
// torch.Tensor.half does): values beyond 65504 (after rounding) become infinities, values below
// 2^-25 in magnitude become signed zeros, NaN stays NaN.
func Float32ToFloat16(f float32) uint16 {
	return float16.Fromfloat32(f).Bits()
}

// BFloat16ToFloat32 decodes a bfloat16 value: the top 16 bits of a float32 (1 sign, 8 exponent,
// 7 fraction bits), so the decoding is exact.
func BFloat16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// Float32ToBFloat16 encodes f as bfloat16, keeping the top 16 bits of its float32 encoding rounded to
// nearest with ties to even (as torch.Tensor.bfloat16 does):
//
//	bits16 = (bits32 + 0x7fff + (bits32 >> 16 & 1)) >> 16
//
// Every NaN becomes 0x7fc0, a quiet NaN, as c10::BFloat16 does (the rounding above could carry a NaN
// whose payload lies in the low bits into an infinity). PyTorch's vectorized CPU kernels write 0xffff
// instead; both are NaN.
func Float32ToBFloat16(f float32) uint16 {
	if f != f {
		return 0x7fc0
	}
	bits := math.Float32bits(f)
	return uint16((bits + 0x7fff + (bits >> 16 & 1)) >> 16)
}

// float8E5M2ToFloat32 decodes an FP8 E5M2 value (1 sign, 5 exponent, 2 fraction bits; Micikevicius et
// al. 2022, arXiv:2209.05433): the top byte of a float16, so the decoding is exact.
func float8E5M2ToFloat32(b uint8) float32 {
	return Float16ToFloat32(uint16(b) << 8)
}

// float8E4M3ToFloat32 decodes an FP8 E4M3 value (1 sign, 4 exponent with bias 7, 3 fraction bits; the
// "FN" variant of arXiv:2209.05433: no infinities, S.1111.111 is NaN, largest finite 448):
//
//	normal (e > 0):    (-1)^s * 2^(e-7) * (1 + m/8)
//	subnormal (e = 0): (-1)^s * 2^-6 * m/8
func float8E4M3ToFloat32(b uint8) float32 {
	sign := float32(1)
	if b&0x80 != 0 {
		sign = -1
	}
	e, m := int(b>>3&0x0f), float64(b&0x07)
	switch {
	case e == 0x0f && m == 7:
		return float32(math.NaN())
	case e == 0:
		return sign * float32(math.Ldexp(m/8, -6))
	default:
		return sign * float32(math.Ldexp(1+m/8, e-7))
	}
}
