resource "aws_lb" "control_plane" {
  #checkov:skip=CKV_AWS_91: access logs need an S3 bucket with its own policy and lifecycle, which belong to the operator's logging account; the control plane logs every request itself
  #checkov:skip=CKV2_AWS_28: a WAF costs more than the API it would guard at this scale; the API requires bearer tokens, and a web ACL can be associated later without changes here
  name                       = "${var.name}-control-plane"
  load_balancer_type         = "application"
  internal                   = var.alb_internal
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.alb_internal ? local.private_subnet_ids : local.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
}

resource "aws_lb_target_group" "control_plane" {
  #checkov:skip=CKV_AWS_378: TLS ends at the load balancer; the hop to the tasks stays inside the VPC's private subnets, and the tasks' security group admits only the load balancer
  name                 = "${var.name}-control-plane"
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = local.vpc_id
  deregistration_delay = 30

  # Both replicas serve the API; only the one holding the advisory lock
  # reconciles, so readiness does not depend on it.
  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.control_plane.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.control_plane.arn
  }
}
