// Package fid computes the Frechet Inception Distance (FID) the way pytorch-fid does
// (github.com/mseitzer/pytorch-fid, src/pytorch_fid/fid_score.py and inception.py), so that our
// numbers can be compared with published ones.
//
// # The distance
//
// FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
// Equilibrium", arXiv:1706.08500v6, Eq. 6) fits a Gaussian N(mu, Sigma) to the Inception pool3
// features of each image set and reports the squared Frechet (2-Wasserstein) distance between the two
// Gaussians (Dowson & Landau 1982):
//
//	d^2 = ||mu1 - mu2||^2 + Tr(Sigma1) + Tr(Sigma2) - 2 Tr((Sigma1 Sigma2)^{1/2})
//
// pytorch-fid's calculate_frechet_distance evaluates the last term with scipy.linalg.sqrtm on the
// non-symmetric product Sigma1 Sigma2, retries with 1e-6*I added to both covariances when the result
// is not finite, and drops the imaginary part when its diagonal is within 1e-3 of zero.
//
// We only need the trace, and compute it without a matrix square root. Factor each covariance as
// Sigma = G^T G (G [r,D], r its numerical rank; Cholesky with complete pivoting, which also works for
// singular covariances). Then Sigma1 Sigma2 = G1^T (G1 G2^T G2) has the non-zero eigenvalues of
// (G1 G2^T G2) G1^T = B B^T with B = G1 G2^T [r1,r2], that is the squared singular values of B, so
//
//	Tr((Sigma1 Sigma2)^{1/2}) = sum_i sigma_i(G1 G2^T) = ||G1 G2^T||_*   (nuclear norm)
//
// The singular values are real and non-negative and computed to ~D*eps*|B| by a backward-stable SVD;
// there is no complex arithmetic and no square root of rounding noise, which an eigenvalue route
// (sqrt of the eigenvalues of Sigma1^{1/2} Sigma2 Sigma1^{1/2}) suffers at the zero eigenvalues of a
// rank-deficient covariance (fewer samples than feature dimensions). See Distance for how the
// pytorch-fid corner cases map. At D = 2048 it takes 10-12 s on 2 cores (BenchmarkDistance).
//
// # Statistics
//
// Stats holds mu [D] and Sigma [D,D] in float64 with np.cov semantics (divide by N-1), plus where
// they came from: the feature extractor, the hash of its weights and a description of the data.
// Save and Load keep them in a safetensors file (F64 tensors "mu" and "sigma", the rest in
// __metadata__); Load refuses statistics made by another extractor or other weights.
//
// # Resize
//
// pytorch-fid's InceptionV3 resizes its input to 299x299 with
// torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) before
// scaling it from [0, 1] to [-1, 1]. Resize is a direct pure-Go reference of that resize;
// ResizeMatrix gives the same resize as two small matrices (out = Rh · img · Rw^T per channel), so
// that a device can do it with two matrix multiplications.
//
// # The Inception
//
// Inception is pytorch-fid's InceptionV3([3]) (src/pytorch_fid/inception.py, read at commit
// 1232cd6), the network
// FID is defined with (Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer
// Vision", arXiv:1512.00567v3; TensorFlow's 2015-12-05 graph, ported to PyTorch): torchvision's
// Inception3 with a 1008-class head (unused) and its Mixed blocks patched as the TensorFlow graph
// computes them:
//
//	input   x in [0, 1], [N,3,H,W] (grayscale repeated) -> bilinear to 299x299 -> 2x - 1
//	stem    Conv2d_1a_3x3 (stride 2), 2a_3x3, 2b_3x3 (pad 1), max pool 3x3/2,
//	        Conv2d_3b_1x1, 4a_3x3, max pool 3x3/2                          -> [N,192,35,35]
//	Mixed_5b, 5c, 5d   FIDInceptionA: average pool 3x3/1 pad 1, count_include_pad=False
//	Mixed_6a           InceptionB (stride 2)                               -> [N,768,17,17]
//	Mixed_6b .. 6e     FIDInceptionC (1x7 and 7x1 convolutions), average pool as in A
//	Mixed_7a           InceptionD (stride 2)                               -> [N,1280,8,8]
//	Mixed_7b           FIDInceptionE_1: average pool as in A
//	Mixed_7c           FIDInceptionE_2: MAX pool 3x3/1 pad 1 in the pool branch
//	pool3              mean over the 8x8 positions                          -> [N,2048]
//
// Every convolution is torchvision's BasicConv2d: conv (no bias), BatchNorm (eps 0.001, running
// statistics), ReLU. LoadInception folds each BatchNorm into its convolution (see foldBatchNorm).
//
// The network runs channels-last ([N,H,W,C]), with the backend's convolution on XLA. On the pure-Go
// backend, whose convolution is a single-threaded loop, a convolution is one matrix product of the
// kh*kw shifted views of the input (im2col), a 1x1 convolution a plain matrix product, and the pools
// are maxima and sums of shifted slices (that backend has no Pad, and its ReduceWindow walks a
// generic index iterator per element). There it computes ~0.35 images/s on 2 cores
// (BenchmarkFeatures), nearly all of it in matrix products.
//
// Against pytorch-fid (the fixtures of ../shared/testdata/fid, on random ternary weights), on the
// pure-Go backend in float32: features within 2e-4 (1 + |f|) (test tolerance; observed 6.7e-5). A
// float64 evaluation of the network is within 1e-5 (1 + |f|) of ours and within 7e-5 (1 + |f|) of
// pytorch-fid's own float32 output. On an NVIDIA GPU, XLA's float32 products are TF32 unless asked
// otherwise, so every product of the network is nn.ExactProduct (see Inception.DType).
//
// # Our classifier
//
// Classifier is a fast, offline alternative for 28x28 grayscale data (MNIST, Fashion-MNIST): a
// small CNN of ours (four 3x3 convolutions, two of stride 2, then fc 3136->128->10; see
// ClassifierSpecs), trained with cross-entropy and Adam on the data set's training split
// (TrainClassifier), whose 128 fc1 outputs before the ReLU are the features. Its Extractor is named
// "classifier-<data set> (ours, not Inception)" with the SHA-256 of its weights file, so statistics of
// one classifier are never compared with another's. Its FIDs rank models of one data set; they are
// not comparable with published (Inception) FIDs.
//
// FindInceptionWeights finds pytorch-fid's weights file (ours, then torch hub's cache) or downloads
// it; Extractor names the network and the SHA-256 of its weights in statistics files.
package fid
