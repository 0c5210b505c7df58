"""A SAM2 video predictor with tiny hyper-parameters and random weights, for tests and GUI smoke checks.

It is assembled from the sam2 package's own classes (Hiera trunk, FPN neck, memory attention with rotary
attention, memory encoder) with the SAM2.1 switches, so it runs every code path of a real model in a fraction
of a second on a CPU. Its masks mean nothing. Nothing is downloaded.
"""

from __future__ import annotations

__all__ = ["tiny_sam2"]


def tiny_sam2(image_size: int = 64, *, seed: int = 0, hidden: int = 32, mem_dim: int = 16):
    """Build a tiny random-weight ``SAM2VideoPredictor`` on the CPU, in eval mode.

    Parameters
    ----------
    image_size : int
        Square input size (a multiple of 64).
    seed : int
        Seed of the random weights (the same seed gives the same model).
    hidden, mem_dim : int
        Width of the SAM heads and memory attention (a multiple of 16), and of the memory features.

    Returns
    -------
    sam2.sam2_video_predictor.SAM2VideoPredictor
    """
    import torch
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    if image_size % 64:
        raise ValueError(f'Argument "image_size" must be a multiple of 64, got {image_size!r}.')
    feat = image_size // 16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk = Hiera(embed_dim=8, num_heads=1, stages=(1, 2, 2, 1), global_att_blocks=(2, 4),
                      window_pos_embed_bkg_spatial_size=(2, 2), window_spec=(4, 4, 2, 2))
        neck = FpnNeck(position_encoding=PositionEmbeddingSine(num_pos_feats=hidden), d_model=hidden,
                       backbone_channel_list=[64, 32, 16, 8], fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")

        def rope(**kw):
            return RoPEAttention(embedding_dim=hidden, num_heads=1, downsample_rate=1, dropout=0.0,
                                 feat_sizes=(feat, feat), **kw)

        layer = MemoryAttentionLayer(
            activation="relu", d_model=hidden, dim_feedforward=2 * hidden, dropout=0.0, pos_enc_at_attn=False,
            pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
            self_attention=rope(), cross_attention=rope(rope_k_repeat=True, kv_in_dim=mem_dim),
        )
        memory_encoder = MemoryEncoder(
            out_dim=mem_dim, in_dim=hidden, position_encoding=PositionEmbeddingSine(num_pos_feats=mem_dim),
            mask_downsampler=MaskDownSampler(embed_dim=hidden, kernel_size=3, stride=2, padding=1),
            fuser=Fuser(CXBlock(dim=hidden, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
                        num_layers=1),
        )
        model = SAM2VideoPredictor(
            image_encoder=ImageEncoder(trunk=trunk, neck=neck, scalp=1),
            memory_attention=MemoryAttention(d_model=hidden, pos_enc_at_input=True, layer=layer, num_layers=1),
            memory_encoder=memory_encoder,
            num_maskmem=7, image_size=image_size,
            sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0,
            use_mask_input_as_output_without_sam=True, directly_add_no_mem_embed=True, no_obj_embed_spatial=True,
            use_high_res_features_in_sam=True, multimask_output_in_sam=True, iou_prediction_use_sigmoid=True,
            use_obj_ptrs_in_encoder=True, add_tpos_enc_to_obj_ptrs=True, proj_tpos_enc_in_obj_ptrs=True,
            use_signed_tpos_enc_to_obj_ptrs=True, only_obj_ptrs_in_the_past_for_eval=True,
            pred_obj_scores=True, pred_obj_scores_mlp=True, fixed_no_obj_ptr=True,
            multimask_output_for_tracking=True, use_multimask_token_for_obj_ptr=True,
            multimask_min_pt_num=0, multimask_max_pt_num=1, use_mlp_for_obj_ptr_proj=True,
            binarize_mask_from_pts_for_mem_enc=True,
        )
    model.medtrans_name = f"tiny-sam2-{image_size}"
    model.medtrans_weights = None
    return model.eval()
