package settle

import (
	"context"
	"fmt"
)

func (s *Service) statement(ctx context.Context, sp Spec) ([]File, error) {
	return nil, fmt.Errorf("%w: statements are not implemented yet", ErrBadRequest)
}
